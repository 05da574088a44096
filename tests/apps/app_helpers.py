"""Helpers of the app tests (imported by name): images, and a real uvicorn server on a free local port."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image


def write_png(path: Path, color: tuple[int, int, int], seed: int = 0, size: tuple[int, int] = (24, 20)) -> Path:
    """A small noisy image of one colour."""
    noise = np.random.default_rng(seed).integers(-20, 20, (size[1], size[0], 3))
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.clip(np.array(color) + noise, 0, 255).astype(np.uint8)).save(path)
    return path


@contextlib.contextmanager
def serving(app: object, timeout: float = 30.0) -> Iterator[str]:
    """Run `app` with uvicorn in a thread on 127.0.0.1 (a free port); yield its base URL; stop it after."""
    import uvicorn

    from unfreeze.apps.serve import bind_socket

    sock = bind_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout)
        sock.close()


def folder_cleaner(run: Path, images: Path) -> object:
    """A Cleaner over a copied run, its items scored by the run's model (as `unfreeze clean` builds it)."""
    import json

    from unfreeze.apps.clean import Cleaner, collect_items
    from unfreeze.apps.serve import load_model
    from unfreeze.data import ImageDataLoaders

    learn = load_model(run)
    dls = ImageDataLoaders.from_folder(images, size=16, bs=4, seed=0, num_workers=0)
    dls.set_normalization(learn.dls.valid.mean, learn.dls.valid.std)
    options = json.loads((run / "config.json").read_text())["options"]
    return Cleaner(run, options, collect_items(learn, dls), classes=list(dls.vocab))


def multi_label_cleaner(tmp_path: Path) -> tuple[object, Path]:
    """A Cleaner over a multi-label CSV of 3 real images (classes joined by ';'), and the CSV.

    The items are made as `collect_items` makes them (a tuple of classes per image), without a model.
    """
    from unfreeze.apps.clean import Cleaner, CleanItem

    root = tmp_path / "planet"
    table = root / "labels.csv"
    root.mkdir(parents=True)
    table.write_text("image,tags\na.png,haze;primary\nb.png,clear\nc.png,\n")
    labels = [("a.png", ("haze", "primary")), ("b.png", ("clear",)), ("c.png", ())]
    items = [CleanItem(index, write_png(root / name, (90 * index, 120, 60), seed=index), "train", label, "clear",
                       0.9, 1.0 - index / 10) for index, (name, label) in enumerate(labels)]
    options = {"data": str(root), "csv": "labels.csv", "multi_label": True, "label_delim": ";"}
    return Cleaner(tmp_path / "run", options, items, classes=["clear", "haze", "primary"]), table


def wait_until(page: object, expression: str, timeout_ms: int = 20_000) -> None:
    """Poll a JavaScript expression in a Playwright page until it is true. Playwright's wait_for_function
    polls with eval, which the pages' Content-Security-Policy (script-src 'self') rightly refuses;
    page.evaluate is not eval."""
    deadline = time.monotonic() + timeout_ms / 1000
    while not page.evaluate(expression):  # type: ignore[attr-defined]
        if time.monotonic() > deadline:
            raise AssertionError(f"still false after {timeout_ms} ms: {expression}")
        page.wait_for_timeout(50)  # type: ignore[attr-defined]
