"""Cases 7, 9 and 10: unreadable weights and run configs, undecodable validation sets, bad numbers,
and which exceptions the CLI treats as user errors."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path

import pytest

from cli_helpers import TINY, run_user_error
from unfreeze import ImageDataLoaders
from unfreeze.cli import commands, main


# Seeded garbage: the same bytes every run, so a failure repeats.
@pytest.mark.parametrize(("name", "content"), [("w.safetensors", random.Random(1).randbytes(256)),
                                               ("w.pth", b"plain text\n"), ("w.pth", random.Random(2).randbytes(256)),
                                               ("w.txt", b"x")])
def test_unreadable_weights_file(name: str, content: bytes, tiny_data: Path, tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    weights = tmp_path / name
    weights.write_bytes(content)
    out = tmp_path / "run"
    line = run_user_error(["train", str(tiny_data), "--arch", "test_resnet", "--size", "16", "--weights",
                           str(weights), "--out", str(out)], capsys)
    assert name in line
    assert not out.exists()


@pytest.mark.parametrize("config", ["{not json", "[1, 2]", '{"command": "train"}', '{"options": {"arch": "x"}}'])
def test_interpret_with_a_broken_config(config: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(config)
    line = run_user_error(["interpret", str(run)], capsys)
    assert str(run / "config.json") in line


def test_every_validation_image_undecodable(tiny_data: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    for path in (tiny_data / "valid").rglob("*.png"):
        path.write_bytes(b"not an image")
    out = tmp_path / "run"
    line = run_user_error(["train", str(tiny_data), *TINY, "--out", str(out)], capsys)
    assert "None of the 8 images" in line and str(tiny_data / "valid") in line and "cannot identify" in line
    assert not out.exists()  # stopped before training


def test_a_class_with_no_decodable_training_image_stops_before_training(make_image_folder, tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """train/bee holds only corrupt files (valid/bee is fine): the file check passed them (it reads no pixels),
    so the class trained with no image of it. Now it stops before a run directory exists, naming the class."""
    root = make_image_folder(classes=("ant", "bee"), n_train=6, n_valid=2)
    for image in (root / "train" / "bee").glob("*.png"):
        image.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 40)  # a PNG signature, then no image
    out = tmp_path / "run"
    line = run_user_error(["train", str(root), *TINY, "--out", str(out)], capsys)
    assert "'bee' (all 6 of its files under" in line and str(root / "train" / "bee") in line
    assert "replace those files with readable images" in line and "'ant'" not in line
    assert not out.exists()


def test_fit_recipe_counts_the_training_images_that_decode(make_image_folder) -> None:
    """The imbalance check (and the class check) count what decodes, not the files listed: 6 + 2 broken ant
    files vs 6 bee files is balanced; a class that loses every file is a DataError before any step."""
    from unfreeze import DataError, vision_learner

    root = make_image_folder(classes=("ant", "bee"), n_train=6, n_valid=2)
    for index in range(6, 8):
        (root / "train" / "ant" / f"broken_{index}.png").write_bytes(b"not an image")
    dls = ImageDataLoaders.from_folder(root, size=16, bs=4, seed=0, num_workers=0)
    learn = vision_learner(dls, "test_resnet", pretrained=False, quiet=True)
    with pytest.warns(UserWarning, match="could not be decoded"):
        learn.fit_recipe(1, freeze_epochs=1, flip=False, imbalance="none")
    assert learn.progress.recipe["imbalance_chosen"] == "none"
    assert learn.recorder.notes and "6 vs 6" in " ".join(learn.recorder.notes)
    for image in (root / "train" / "bee").glob("*.png"):
        image.write_bytes(b"not an image")
    learn = vision_learner(ImageDataLoaders.from_folder(root, size=16, bs=4, seed=0, num_workers=0), "test_resnet",
                           pretrained=False, quiet=True)
    with pytest.warns(UserWarning, match="could not be decoded"), pytest.raises(DataError, match="'bee'"):
        learn.fit_recipe(1, freeze_epochs=1, flip=False)
    assert learn.recorder.history == [] and learn.recorder.losses == []


def test_an_empty_validation_folder_stops_before_training(tiny_data: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    # valid/ holding only a hidden file and a note: no validation image, so every validation loss would be
    # NaN and the run used to end in "Training diverged".
    for path in (tiny_data / "valid").rglob("*.png"):
        path.unlink()
    (tiny_data / "valid" / "ant" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (tiny_data / "valid" / "bee" / "notes.txt").write_text("to do")
    out = tmp_path / "run"
    line = run_user_error(["train", str(tiny_data), *TINY, "--out", str(out)], capsys)
    assert "no validation image" in line and str(tiny_data / "valid") in line and "diverged" not in line
    assert not out.exists()


def test_a_split_with_no_validation_image_stops_before_training(make_image_folder: Callable[..., Path],
                                                                tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    # 2 classes of 3 images at --valid-pct 0.1: int(0.1 * 6) = 0 validation images.
    data = make_image_folder(classes=("ant", "bee"), n_train=3, n_valid=0, flat=True)
    out = tmp_path / "run"
    line = run_user_error(["train", str(data), *TINY, "--bs", "2", "--valid-pct", "0.1", "--out", str(out)], capsys)
    assert "no validation image" in line and "--valid-pct" in line and "diverged" not in line
    assert not out.exists()


def test_a_split_of_single_image_classes_names_the_real_cause(make_image_folder: Callable[..., Path],
                                                              tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    # 4 classes of 1 image at --valid-pct 0.5: 2 images are drawn for validation, but each is the only image
    # of its class and goes back to training. The error used to say "0.5 of the 4 images rounds down to 0".
    data = make_image_folder(classes=("ant", "bee", "cat", "dog"), n_train=1, n_valid=0, flat=True)
    out = tmp_path / "run"
    line = run_user_error(["train", str(data), *TINY, "--bs", "2", "--valid-pct", "0.5", "--out", str(out)], capsys)
    assert "rounds down" not in line
    assert "only image of its class" in line and "drew 2 of the 4 images" in line
    assert not out.exists()


@pytest.mark.parametrize("argv", [["--lr", "inf"], ["--lr", "nan"], ["--lr", "-1e-3"], ["--seed", "-1"],
                                  ["--seed", str(2**32)], ["--seed", "1.5"], ["--seed", "abc"]])
def test_bad_numbers_are_refused_by_argparse(argv: list[str], tiny_data: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    line = run_user_error(["train", str(tiny_data), *TINY, "--out", str(out), *argv], capsys)
    assert argv[0] in line
    assert not out.exists()


def test_largest_seed_is_accepted(tiny_data: Path, tmp_path: Path) -> None:
    assert main(["train", str(tiny_data), *TINY, "--out", str(tmp_path / "run"), "--seed", str(2**32 - 1),
                 "--quiet"]) == 0


@pytest.mark.parametrize("bs", [2.5, 0, True, "4"])
def test_bad_batch_sizes_are_refused(bs: object, tiny_data: Path) -> None:
    with pytest.raises(ValueError, match=f"got {bs!r}"):
        ImageDataLoaders.from_folder(tiny_data, size=16, bs=bs)  # type: ignore[arg-type]


def test_a_library_bug_shows_its_traceback(tiny_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def bug(options: dict[str, object]) -> None:
        raise ValueError("an internal invariant broke")

    monkeypatch.setattr(commands, "load_data", bug)
    with pytest.raises(ValueError, match="invariant"):
        main(["train", str(tiny_data), *TINY])


def test_debug_shows_the_traceback_of_a_user_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--debug", "train", str(tmp_path / "nowhere"), *TINY])
    err = capsys.readouterr().err
    assert code == 2
    assert "Traceback" in err and "DataError" in err and err.rstrip().splitlines()[-1].startswith("unfreeze: error:")


def test_csv_and_label_re_user_errors_through_the_cli(tmp_path: Path, write_image: Callable[..., Path],
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    write_image(tmp_path / "data" / "ant_1.png")
    line = run_user_error(["train", str(tmp_path / "data"), *TINY, "--label-re", r"^[a-z]+_\d+\.png$"], capsys)
    assert "no capture group" in line
    (tmp_path / "data" / "labels.csv").write_text("file,label\nant_1.png,\n")
    line = run_user_error(["train", str(tmp_path / "data"), *TINY, "--csv", "labels.csv"], capsys)
    assert "empty label" in line
    (tmp_path / "data" / "tables").mkdir()
    line = run_user_error(["train", str(tmp_path / "data"), *TINY, "--csv", "tables"], capsys)
    assert "is a folder" in line and "does not exist" not in line  # it exists: the wrong kind of path
    line = run_user_error(["train", str(tmp_path / "data"), *TINY, "--task", "regression", "--csv", "tables"], capsys)
    assert "is a folder" in line and "does not exist" not in line


def test_config_json_round_trip(tiny_run: Path) -> None:
    # The guard above must not refuse a real run's config.
    assert "options" in json.loads((tiny_run / "config.json").read_text())
    assert main(["interpret", str(tiny_run)]) == 0


def test_weights_with_no_pretrained(tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A plain ValueError of create_model before; the CLI now checks the pair itself.
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(b"")
    line = run_user_error(["train", str(tiny_data), *TINY, "--weights", str(weights)], capsys)
    assert "--weights" in line and "--no-pretrained" in line


def test_a_training_set_with_no_decodable_image_stops_with_a_data_error(make_image_folder) -> None:
    """Every training file is broken: the fit stops after the empty first epoch, not after 0-step 'training'."""
    from unfreeze import DataError, ImageDataLoaders, vision_learner

    root = make_image_folder(classes=("ant", "bee"), n_train=3, n_valid=2)
    for image in (root / "train").rglob("*.png"):
        image.write_bytes(b"not an image")
    dls = ImageDataLoaders.from_folder(root, size=16, bs=2, seed=0, num_workers=0)
    learn = vision_learner(dls, "test_resnet", pretrained=False, quiet=True)
    with pytest.warns(UserWarning), pytest.raises(DataError, match="Not one training batch"):
        learn.fit(1, 1e-3)
    assert learn.recorder.history == []


def test_any_garbage_torch_file_is_a_clear_error(tmp_path: Path) -> None:
    """torch's restricted unpickler fails on random bytes with whatever they lead it to (an IndexError
    once slipped through as a traceback): every one must be a WeightsFileError or WeightsMismatchError."""
    from unfreeze.models.weights import WeightsFileError, WeightsMismatchError, read_state_dict

    draw = random.Random(0)
    path = tmp_path / "w.pth"
    for _ in range(200):
        path.write_bytes(bytes(draw.getrandbits(8) for _ in range(draw.randint(1, 300))))
        with pytest.raises((WeightsFileError, WeightsMismatchError)):
            read_state_dict(path)


def test_batches_of_one_image_stop_before_training(make_image_folder, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """test_resnet at 16 px ends on a 1x1 map: its batch norm cannot train on one image. --bs 1 (and lr_find
    at that batch size) is refused before any step, not a traceback mid-epoch."""
    from unfreeze import DataError, ImageDataLoaders, vision_learner

    root = make_image_folder(classes=("ant", "bee"), n_train=2, n_valid=1)
    argv = ["train", str(root), *TINY, "--no-upscale", "--out", str(tmp_path / "run")]
    line = run_user_error([*argv[:-2], "--bs", "1", *argv[-2:]], capsys)  # --bs 1 overrides TINY's --bs 4
    assert "batch size of 2 or more" in line
    line = run_user_error([*argv[:-2], "--bs", "1", "--lr", "auto", "--out", str(tmp_path / "auto")], capsys)
    assert "batch size of 2 or more" in line
    learn = vision_learner(ImageDataLoaders.from_folder(root, size=16, bs=1, seed=0, num_workers=0), "test_resnet",
                           pretrained=False, quiet=True)
    with pytest.raises(DataError, match="batches of one image"):
        learn.fit(1, 1e-3)
    assert learn.recorder.history == [] and learn.recorder.losses == []


def test_a_batch_that_shrinks_to_one_image_is_left_out_with_one_warning(make_image_folder) -> None:
    """Broken files dropped from a batch of 2 leave one image: that batch is skipped, the fit goes on."""
    from unfreeze import ImageDataLoaders, vision_learner

    root = make_image_folder(classes=("ant", "bee"), n_train=4, n_valid=2)
    for image in sorted((root / "train" / "ant").glob("*.png"))[:3]:
        image.write_bytes(b"not an image")
    learn = vision_learner(ImageDataLoaders.from_folder(root, size=16, bs=2, seed=0, num_workers=0), "test_resnet",
                           pretrained=False, quiet=True, seed=0)
    with pytest.warns(UserWarning, match="one image"):
        learn.fit(2, 1e-3)
    assert len(learn.recorder.history) == 2


def test_get_preds_on_files_with_a_corrupt_one_says_which_rows_are_missing(make_image_folder, tmp_path: Path) -> None:
    """get_preds(dl=test_dl(files)) returns a row per decodable file only; the warning did not say so, and
    zip(files, preds) then paired files with the wrong predictions without a word."""
    from unfreeze import vision_learner

    root = make_image_folder()
    dls = ImageDataLoaders.from_folder(root, size=16, bs=4, seed=0, num_workers=0)
    learn = vision_learner(dls, "test_resnet", pretrained=False, quiet=True, seed=0)
    files = sorted((root / "valid").rglob("*.png"))
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    files.insert(2, broken)
    dl = dls.test_dl(files)
    with pytest.warns(UserWarning, match=r"(?s)no row.*dataset\.dropped.*broken\.png") as caught:
        preds, _ = learn.get_preds(dl=dl)
    assert len(preds) == len(files) - 1 and list(dl.dataset.dropped) == [2]
    assert sum("no row" in str(w.message) for w in caught) == 1


def test_test_dl_leaves_a_broken_link_out_instead_of_refusing_the_list(make_image_folder, tmp_path: Path) -> None:
    """test_dl([good.png, moved.png -> nowhere]) refused the whole list ('do not exist'), where predict gives the
    link its own error row; a name that is not there at all is still refused (a typo)."""
    import os

    from unfreeze import vision_learner
    from unfreeze.data import DataError

    root = make_image_folder()
    dls = ImageDataLoaders.from_folder(root, size=16, bs=4, seed=0, num_workers=0)
    learn = vision_learner(dls, "test_resnet", pretrained=False, quiet=True, seed=0)
    good = sorted((root / "valid").rglob("*.png"))[:2]
    link = tmp_path / "moved.png"
    os.symlink(tmp_path / "nowhere.png", link)
    dl = dls.test_dl([good[0], link, good[1]])
    with pytest.warns(UserWarning, match=r"(?s)no row.*moved\.png"):
        preds, _ = learn.get_preds(dl=dl)
    assert len(preds) == 2 and list(dl.dataset.dropped) == [1]
    with pytest.raises(DataError, match="do not exist"):
        dls.test_dl([good[0], tmp_path / "typo.png"])
