"""`unfreeze export --format` on a full disk and after an interruption: one line, nothing left behind,
and the same command may replace the files it wrote (its manifest), never a foreign one."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cli_helpers import run_user_error
from unfreeze.apps import deploy_run
from unfreeze.cli import main


def mounted_tmpfs(folder: Path, size: str) -> Iterator[Path]:
    folder.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.decode().strip()})")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "--lazy", str(folder)], check=True)


@pytest.fixture
def tiny_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """64 KiB: no model file fits."""
    yield from mounted_tmpfs(tmp_path / "tiny", "64k")


@pytest.fixture
def model_sized_tmpfs(tmp_path: Path, trained_app_run: Path) -> Iterator[Path]:
    """Room for the float ONNX file and a little more, not for its int8 copy and the quantizer's files."""
    size = (trained_app_run / "model.unfreeze").stat().st_size
    yield from mounted_tmpfs(tmp_path / "model-sized", f"{(size * 6 // 5) // 1024}k")


def hidden_files(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.rglob("*") if path.name.startswith(".") or "inferred" in path.name)


def test_torchscript_onto_a_full_disk_is_one_line(trained_app_run: Path, tiny_tmpfs: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """torch.jit.save given a path failed in C++ (a RuntimeError traceback with C++ frames)."""
    out = tiny_tmpfs / "deploy"
    line = run_user_error(["export", str(trained_app_run), "--format", "torchscript", "--out", str(out)], capsys)
    assert f"cannot write {out / 'model.pt'} (No space left on device" in line
    assert hidden_files(tiny_tmpfs) == [] and not (out / "model.pt").exists()


def test_onnx_int8_onto_a_full_disk_is_one_line(trained_app_run: Path, model_sized_tmpfs: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """ONNX Runtime's quantizer wrote model-inferred.onnx beside the model and died on its truncated copy
    with a protobuf DecodeError traceback; the partial file stayed."""
    out = model_sized_tmpfs / "deploy"
    line = run_user_error(["export", str(trained_app_run), "--format", "onnx", "--int8", "--out", str(out)], capsys)
    assert "No space left on device" in line and str(out) in line
    assert hidden_files(model_sized_tmpfs) == []
    assert not out.exists()  # the folder the export made is gone with its manifest, which listed files never written


def test_a_failed_export_into_an_existing_folder_keeps_it(trained_app_run: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """A failing export into a new folder left it behind holding only unfreeze_export.json, which listed
    model.onnx and model_card.md though neither was written; a folder that was there stays as it was."""
    from unfreeze.apps.errors import AppError

    def failing(*args: object, **kwargs: object) -> None:
        raise AppError("the check failed")

    monkeypatch.setattr(deploy_run, "_export_and_check", failing)
    new = tmp_path / "new"
    assert "the check failed" in run_user_error(["export", str(trained_app_run), "--format", "onnx", "--out",
                                                 str(new)], capsys)
    assert not new.exists()
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "notes.txt").write_text("mine")
    run_user_error(["export", str(trained_app_run), "--format", "onnx", "--out", str(kept)], capsys)
    assert (kept / "notes.txt").read_text() == "mine"


def test_an_interrupted_export_may_be_repeated(trained_app_run: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Once model.onnx existed without model_card.md (Ctrl-C before the card), the same export refused
    to replace its own file."""
    out = tmp_path / "deploy"

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(deploy_run, "write_model_card", interrupted)  # Ctrl-C after the model, before the card
        assert main(["export", str(trained_app_run), "--format", "onnx", "--out", str(out)]) == 130
    assert (out / "model.onnx").is_file() and not (out / "model_card.md").exists()
    assert main(["export", str(trained_app_run), "--format", "onnx", "--out", str(out)]) == 0
    assert (out / "model_card.md").is_file()
    manifest = json.loads((out / deploy_run.MANIFEST_FILE).read_text())
    assert "model.onnx" in manifest["files"] and "model_card.md" in manifest["files"]
    assert hidden_files(out) == []


def test_a_foreign_file_beside_an_export_is_still_never_replaced(trained_app_run: Path, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "deploy"
    assert main(["export", str(trained_app_run), "--format", "onnx", "--out", str(out)]) == 0
    (out / "model.pt").write_bytes(b"the user's own TorchScript model")  # a card and a manifest are there
    line = run_user_error(["export", str(trained_app_run), "--format", "torchscript", "--out", str(out)], capsys)
    assert "already holds model.pt, not written by 'unfreeze export'" in line
    assert (out / "model.pt").read_bytes() == b"the user's own TorchScript model"


def test_a_damaged_summary_is_one_line_naming_it(run_copy: Callable[[], tuple[Path, Path]], tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """The model card read summary.json unchecked: 'final' as a list was an AttributeError traceback."""
    run, _ = run_copy()
    summary = json.loads((run / "summary.json").read_text())
    summary["final"] = [1, 2]
    (run / "summary.json").write_text(json.dumps(summary))
    line = run_user_error(["export", str(run), "--format", "onnx", "--out", str(tmp_path / "deploy")], capsys)
    assert str(run / "summary.json") in line and "'final'" in line
