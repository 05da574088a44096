"""`unfreeze clean` under crashes and hostile pages: a kill -9 at every step of Apply is undone by
`--undo` with every file back (checked by hash), no partial copy, log rows only for changes made, and
the page refuses other sites (Host / Origin) and requests without its session token."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from app_helpers import folder_cleaner, serving

from unfreeze.apps import AppError
from unfreeze.apps.clean import Change, Cleaner, CleanItem
from unfreeze.cli import main

MARKS = [("train/ant/ant_0.png", "bee"), ("train/bee/bee_1.png", None), ("valid/cat/cat_2.png", "ant"),
         ("valid/ant/ant_3.png", None)]


def tree_hashes(folder: Path) -> dict[str, str]:
    return {str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(folder.rglob("*")) if path.is_file()}


def files_under(folder: Path) -> list[Path]:
    return [path for path in folder.rglob("*") if path.is_file()] if folder.exists() else []


def cleaner_without_a_model(run: Path, images: Path) -> Cleaner:
    """A Cleaner over the run's image folder with the items `collect_items` would list (no model needed)."""
    items = [CleanItem(index, path, path.parts[-3], path.parent.name, "ant", 0.5, 1.0)
             for index, path in enumerate(sorted(images.rglob("*.png")))]
    options = json.loads((run / "config.json").read_text())["options"]
    return Cleaner(run, options, items, classes=["ant", "bee", "cat"])


def apply_killed_after(step: int, run: Path, images: Path) -> bool:
    """Run Apply in a forked child that SIGKILLs itself right after its `step`-th file-system step (a rename,
    an fsync, an unlink, half of a copy); True if the child was killed, False if Apply finished first."""
    child = os.fork()
    if child == 0:  # the child: count the steps, die by SIGKILL at the chosen one
        try:
            count = [0]

            def counted(function: Callable[..., object]) -> Callable[..., object]:
                def run_step(*args: object, **kwargs: object) -> object:
                    result = function(*args, **kwargs)
                    count[0] += 1
                    if count[0] == step:
                        os.kill(os.getpid(), signal.SIGKILL)
                    return result
                return run_step

            def half_then_rest(reader: object, writer: object, length: int = 0) -> None:
                data = reader.read()  # type: ignore[attr-defined]
                writer.write(data[: len(data) // 2])  # type: ignore[attr-defined]
                writer.flush()  # type: ignore[attr-defined]
                counted(lambda: None)()  # a kill here leaves a half-written partial copy
                writer.write(data[len(data) // 2:])  # type: ignore[attr-defined]

            for name in ("rename", "replace", "fsync", "unlink"):
                setattr(os, name, counted(getattr(os, name)))
            shutil.copyfileobj = half_then_rest  # type: ignore[assignment]
            cleaner = cleaner_without_a_model(run, images)
            by_path = {str(item.path.relative_to(images)): item.id for item in cleaner.items.values()}
            cleaner.apply([Change(by_path[name], label) for name, label in MARKS])
            os._exit(0)
        except BaseException:  # the child must never return into pytest
            os._exit(3)
    _, status = os.waitpid(child, 0)
    if os.WIFSIGNALED(status):
        assert os.WTERMSIG(status) == signal.SIGKILL
        return True
    assert os.WEXITSTATUS(status) == 0, f"the apply failed in the child (exit {os.WEXITSTATUS(status)})"
    return False


@pytest.fixture
def tmpfs_images(make_tmpfs: Callable[[str, str], Path]) -> Path:
    """A tmpfs for the images: removed files then go to another file system (the copy path)."""
    return make_tmpfs("other-fs", "16m")


def kill_at_every_step_then_undo(run: Path, images: Path, capsys: pytest.CaptureFixture[str]) -> int:
    pristine = images.parent / "pristine"
    shutil.copytree(images, pristine)
    expected = tree_hashes(pristine)
    step = 0
    while True:
        step += 1
        shutil.rmtree(images)
        shutil.copytree(pristine, images)
        for folder in ("cleaning", "removed"):
            shutil.rmtree(run / folder, ignore_errors=True)
        killed = apply_killed_after(step, run, images)
        code = main(["clean", str(run), "--undo"])
        err = capsys.readouterr().err
        # Killed before the journal held the plan: no file had moved, so there is nothing to undo.
        assert code == 0 or "nothing to undo" in err, (step, err)
        assert tree_hashes(images) == expected, f"files differ after a kill at step {step} and --undo"
        assert files_under(run / "removed") == [], step
        assert [path for path in images.rglob(".*") if path.is_file()] == [], step  # no partial copy
        if not killed:
            return step
        assert step < 500, "the apply never finished"


def test_a_kill_at_every_step_of_apply_is_undone(run_copy: Callable[[], tuple[Path, Path]],
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """A kill -9 mid-Apply left moved files with no journal entry: --undo said there was nothing to undo."""
    run, images = run_copy()
    steps = kill_at_every_step_then_undo(run, images, capsys)
    assert steps > 2 * len(MARKS)  # every move and its journal update were a kill point


def test_a_kill_at_every_step_of_apply_across_file_systems_is_undone(
        run_copy: Callable[[], tuple[Path, Path]], tmpfs_images: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Removed files are copied to RUN/removed on another file system: a kill mid-copy left a partial copy."""
    run, images = run_copy()
    moved = tmpfs_images / "images"
    shutil.copytree(images, moved)
    config = json.loads((run / "config.json").read_text())
    config["options"]["data"] = str(moved)
    (run / "config.json").write_text(json.dumps(config))
    kill_at_every_step_then_undo(run, moved, capsys)


def log_rows(run: Path) -> list[str]:
    return (run / "cleaning" / "log.csv").read_text().splitlines()[1:]


def test_a_read_only_data_folder_leaves_no_copy_and_no_log_row(
        run_copy: Callable[[], tuple[Path, Path]], tmpfs_images: Path) -> None:
    """Removing from a read-only folder on another file system left a copy in removed/ and a log row.
    (A read-only mount: root, who runs these tests in CI, ignores folder permissions.)"""
    run, images = run_copy()
    moved = tmpfs_images / "images"
    shutil.copytree(images, moved)
    config = json.loads((run / "config.json").read_text())
    config["options"]["data"] = str(moved)
    (run / "config.json").write_text(json.dumps(config))
    subprocess.run(["mount", "-o", "remount,ro", str(tmpfs_images)], check=True)
    try:
        cleaner = cleaner_without_a_model(run, moved)
        target = next(item for item in cleaner.items.values() if item.path.name == "bee_1.png")
        with pytest.raises(AppError, match="could not move"):
            cleaner.apply([Change(target.id, None)])
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(tmpfs_images)], check=True)
    assert files_under(run / "removed") == []
    assert not (run / "cleaning" / "log.csv").exists() or log_rows(run) == []
    assert (moved / "train" / "bee" / "bee_1.png").is_file()


def test_files_deleted_by_hand_before_apply_are_not_logged(run_copy: Callable[[], tuple[Path, Path]]) -> None:
    run, images = run_copy()
    cleaner = cleaner_without_a_model(run, images)
    gone = next(item for item in cleaner.items.values() if item.path.name == "ant_1.png")
    kept = next(item for item in cleaner.items.values() if item.path.name == "bee_2.png")
    gone.path.unlink()
    done = cleaner.apply([Change(gone.id, "cat"), Change(kept.id, None)])
    assert done["skipped"] == [str(gone.path)] and done["removed"] == 1 and done["relabelled"] == 0
    rows = log_rows(run)
    assert len(rows) == 1 and "bee_2.png" in rows[0]
    assert cleaner.undo()["restored"] == 1 and (images / "train" / "bee" / "bee_2.png").is_file()


def test_undo_after_a_kill_keeps_a_file_put_since_where_a_move_would_have_gone(
        run_copy: Callable[[], tuple[Path, Path]]) -> None:
    """After a kill before a planned move, undo took any file at the move's target for an unfinished copy
    of the source and unlinked it: a photo the user put there since was deleted."""
    from unfreeze.apps.clean_app import create_clean_app

    run, images = run_copy()
    step = 0
    while not (run / "cleaning" / "journal.json").is_file():  # the first kill after the plan is journalled
        step += 1
        assert step < 20 and apply_killed_after(step, run, images), "the plan was never journalled"
    assert (images / "train" / "ant" / "ant_0.png").is_file()  # the first move (ant_0 → bee/) has not run
    theirs = images / "train" / "bee" / "ant_0.png"
    shutil.copy(images / "train" / "bee" / "bee_0.png", theirs)  # a different photo under the target's name
    before = theirs.read_bytes()
    cleaner = cleaner_without_a_model(run, images)
    with serving(create_clean_app(cleaner)) as url:
        token = session_token(url)
        undone = httpx.post(f"{url}/api/undo", headers={"X-Unfreeze-Token": token}, timeout=30)
    assert undone.status_code == 200, undone.text
    assert theirs.read_bytes() == before and (images / "train" / "ant" / "ant_0.png").is_file()


# ---------------------------------------------------------------------------- the page: Host, Origin, token


@pytest.fixture
def clean_server(run_copy: Callable[[], tuple[Path, Path]]) -> Iterator[tuple[str, Path]]:
    from unfreeze.apps.clean_app import create_clean_app

    run, images = run_copy()
    with serving(create_clean_app(folder_cleaner(run, images))) as url:
        yield url, images


def session_token(url: str) -> str:
    import re

    page = httpx.get(url, timeout=30).text
    found = re.search(r'<meta name="unfreeze-token" content="([^"]+)">', page)
    assert found is not None
    return found.group(1)


def test_a_request_for_another_host_is_refused(clean_server: tuple[str, Path]) -> None:
    """A DNS-rebinding page (Host: evil.example resolving to 127.0.0.1) could list and remove images."""
    url, images = clean_server
    port = url.rsplit(":", 1)[1]
    token = session_token(url)
    for host in (f"evil.example:{port}", "evil.example", f"127.0.0.1.evil.example:{port}"):
        assert httpx.get(f"{url}/api/items", headers={"Host": host}, timeout=30).status_code == 403
        answer = httpx.post(f"{url}/api/apply", headers={"Host": host, "X-Unfreeze-Token": token},
                            json={"changes": [{"item": 0, "new_label": None}]}, timeout=30)
        assert answer.status_code == 403
    assert httpx.get(f"{url}/api/items", headers={"Host": f"localhost:{port}"}, timeout=30).status_code == 200
    assert len(list(images.rglob("*.png"))) == 36


def test_a_state_change_from_another_origin_or_without_the_token_is_refused(clean_server: tuple[str, Path]) -> None:
    url, images = clean_server
    token = session_token(url)
    change = {"changes": [{"item": 0, "new_label": None}]}
    from_elsewhere = httpx.post(f"{url}/api/apply", json=change, timeout=30,
                                headers={"Origin": "http://evil.example", "X-Unfreeze-Token": token})
    assert from_elsewhere.status_code == 403
    assert httpx.post(f"{url}/api/apply", json=change, timeout=30).status_code == 403  # no token
    assert httpx.post(f"{url}/api/apply", headers={"X-Unfreeze-Token": "guess"}, json=change,
                      timeout=30).status_code == 403
    assert httpx.post(f"{url}/api/undo", timeout=30).status_code == 403
    assert len(list(images.rglob("*.png"))) == 36  # nothing moved
    done = httpx.post(f"{url}/api/apply", headers={"Origin": url, "X-Unfreeze-Token": token}, json=change, timeout=30)
    assert done.status_code == 200 and done.json()["removed"] == 1
    page = httpx.get(url, timeout=30)
    assert "script-src 'self'" in page.headers["content-security-policy"]


@pytest.mark.parametrize("origin", ["http://127.0.0.1:abc", "http://127.0.0.1:99999", "http://[::1"])
def test_a_malformed_origin_is_refused_not_a_500(clean_server: tuple[str, Path], origin: str) -> None:
    """urlsplit(origin).port raises ValueError for a port that is no number or out of range: a 500."""
    url, images = clean_server
    answer = httpx.post(f"{url}/api/apply", json={"changes": [{"item": 0, "new_label": None}]}, timeout=30,
                        headers={"Origin": origin, "X-Unfreeze-Token": session_token(url)})
    assert answer.status_code == 403 and "from the cleaning page itself" in answer.json()["detail"]
    assert len(list(images.rglob("*.png"))) == 36
