"""Fixtures of the app tests: one tiny trained run per session, fresh copies of it, and its model file."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from app_helpers import write_png

from cli_helpers import TINY
from unfreeze.cli import main

CHROMIUM = "/usr/bin/chromium"
COLORS = {"ant": (220, 40, 40), "bee": (40, 220, 40), "cat": (40, 40, 220)}


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Never wait for a download attempt: the weights lookup sees the machine as offline."""
    monkeypatch.setenv("UNFREEZE_OFFLINE", "1")


@pytest.fixture(scope="session")
def trained_app_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`unfreeze train` on images/train|valid/<ant|bee|cat>/*.png (8 and 4 each), made once per session.

    Tests must not change it: those that move files use `run_copy`.
    """
    root = tmp_path_factory.mktemp("app-run") / "images"
    for name, color in COLORS.items():
        for split, count in (("train", 8), ("valid", 4)):
            for index in range(count):
                write_png(root / split / name / f"{name}_{index}.png", color, seed=index)
    out = root.parent / "run"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("UNFREEZE_OFFLINE", "1")
        code = main(["train", str(root), *TINY, "--out", str(out), "--quiet"])
    if code != 0:
        raise RuntimeError(f"the shared training run failed with exit code {code}")
    return out


@pytest.fixture
def run_copy(trained_app_run: Path, tmp_path: Path) -> Callable[[], tuple[Path, Path]]:
    """Factory: a copy of the shared run and of its images in tmp_path, config.json pointing at the copy."""

    def copy() -> tuple[Path, Path]:
        images = tmp_path / "images"
        shutil.copytree(trained_app_run.parent / "images", images)
        run = tmp_path / "run"
        shutil.copytree(trained_app_run, run)
        config = json.loads((run / "config.json").read_text())
        config["options"]["data"] = str(images)
        (run / "config.json").write_text(json.dumps(config))
        return run, images

    return copy


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's chromium driven by Playwright (never a downloaded browser), one per test module; skipped
    without Playwright or chromium."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install 'unfreeze[test]' for the browser tests")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing: apt-get install -y chromium (scripts/setup.sh test does it)")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"])
        yield launched
        launched.close()
