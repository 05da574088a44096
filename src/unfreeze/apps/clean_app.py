"""The cleaning page's FastAPI app (`unfreeze clean RUN`): a thin layer over `Cleaner`.

    GET  /               the page (pages/clean.html)
    GET  /api/items      {"kind", "multi_label", "classes", "items": [...]} worst loss first;
                         ?split=train|valid&label=NAME (items with NAME among their classes)
    GET  /image/{id}     the image file of one item
    POST /api/apply      {"changes": [{"item": id, "new_label": "cat" | ["haze", "primary"] | null}]}
                         (a list: a multi-label item's new set of classes; null: remove)
    POST /api/undo       reverse the last apply

A user mistake (an unknown class, nothing to undo) answers 400 with a JSON `detail`; a file the
server cannot move or read (a read-only data folder, a CSV that became binary) answers 409 with the
reason, never a 500.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI, HTTPException
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel

from unfreeze.apps.clean import Change, Cleaner
from unfreeze.apps.errors import AppError
from unfreeze.apps.serve import PAGES
from unfreeze.data import DataError

__all__ = ["create_clean_app"]


class _ChangeBody(BaseModel):
    item: int
    new_label: str | list[str] | None


class _ApplyBody(BaseModel):
    changes: list[_ChangeBody]


@contextlib.contextmanager
def _answered_as_http() -> Iterator[None]:
    """The cleaner's errors as HTTP answers: 400 for a wrong mark, 409 for a file that cannot be changed."""
    try:
        yield
    except AppError as error:
        raise HTTPException(400, str(error)) from None
    except (DataError, OSError) as error:
        reason = str(error) if isinstance(error, DataError) else f"{error.filename or ''} ({error.strerror or error})"
        raise HTTPException(409, f"the files could not be changed: {reason}. Fix that, then try again") from None


def create_clean_app(cleaner: Cleaner) -> FastAPI:
    """The FastAPI app of the cleaning page for `cleaner` (see the module for the routes).

    Example:
        >>> app = create_clean_app(Cleaner("runs/pets", options, collect_items(learn, dls)))  # doctest: +SKIP
    """
    app = FastAPI(title=f"unfreeze clean: {cleaner.run_dir.name}", docs_url=None, redoc_url=None)

    @app.get("/", response_class=HTMLResponse)
    def index() -> HTMLResponse:
        return HTMLResponse((PAGES / "clean.html").read_text(encoding="utf-8"))

    @app.get("/api/items")
    def items(split: str | None = None, label: str | None = None) -> dict[str, Any]:
        if split not in (None, "train", "valid"):
            raise HTTPException(400, f"split must be 'train' or 'valid', got {split!r}")
        chosen = cleaner.visible(split, label)
        return {"run": cleaner.run_dir.name, "kind": cleaner.kind, "multi_label": cleaner.multi_label,
                "classes": cleaner.vocab,
                "items": [{**item.as_json(), "name": item.path.name, "image": f"/image/{item.id}"}
                          for item in chosen]}

    @app.get("/image/{item_id}")
    def image(item_id: int) -> FileResponse:
        # Only the files of known items are served: the client names an id, never a path.
        item = cleaner.items.get(item_id)
        if item is None or item_id in cleaner.hidden or not item.path.is_file():
            raise HTTPException(404, f"no image for item {item_id}")
        return FileResponse(item.path)

    @app.post("/api/apply")
    def apply(body: _ApplyBody) -> dict[str, Any]:
        # JSON has lists: a multi-label item's new classes become the tuple a dataset label is.
        changes = [Change(change.item, tuple(change.new_label) if isinstance(change.new_label, list)
                          else change.new_label) for change in body.changes]
        with _answered_as_http():
            return cleaner.apply(changes)

    @app.post("/api/undo")
    def undo() -> dict[str, Any]:
        with _answered_as_http():
            return cleaner.undo()

    app.mount("/static", StaticFiles(directory=PAGES), name="static")
    return app
