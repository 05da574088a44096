"""The cleaning page's FastAPI app (`unfreeze clean RUN`): a thin layer over `Cleaner`.

    GET  /               the page (pages/clean.html)
    GET  /api/items      {"kind", "multi_label", "classes", "items": [...]} worst loss first;
                         ?split=train|valid&label=NAME (items with NAME among their classes)
    GET  /image/{id}     the image file of one item
    POST /api/apply      {"changes": [{"item": id, "new_label": "cat" | ["haze", "primary"] | null}]}
                         (a list: a multi-label item's new set of classes; null: remove)
    POST /api/undo       reverse the last apply

Each apply and undo writes one line to `log` (the terminal of `unfreeze clean`): what it changed and
where the change log is, or why it was refused.

A user mistake (an unknown class, nothing to undo) answers 400 with a JSON `detail`; a file the
server cannot move or read (a read-only data folder, a CSV that became binary) answers 409 with the
reason, never a 500.

Another site open in the same browser must not reach this page: every request must name this
machine (127.0.0.1, localhost, ::1) or the address served on in its Host header (a DNS-rebinding page
names its own), and a POST must come from this page's origin and carry the session token that the page
got in a meta tag when it was rendered (header `X-Unfreeze-Token`). Refusals are 403.
"""

from __future__ import annotations

import contextlib
import json
import mimetypes
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from urllib.parse import urlsplit

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, StrictInt

from unfreeze.apps.clean import Change, Cleaner
from unfreeze.apps.errors import AppError
from unfreeze.apps.serve import PAGES, SecurityHeaders
from unfreeze.apps.templates import render
from unfreeze.data import IMAGE_EXTENSIONS, DataError

__all__ = ["LocalRequestsOnly", "create_clean_app"]

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
_SAFE_METHODS = frozenset({"GET", "HEAD"})


class _ChangeBody(BaseModel):
    item: StrictInt  # an id as the page sends it: `true` or "1" read as item 1 would change an image unasked
    new_label: str | list[str] | None


class _ApplyBody(BaseModel):
    changes: list[_ChangeBody]


_APPLY_BODY = '{"changes": [{"item": ID, "new_label": "CLASS" | ["CLASS", ...] | null}]}'


async def _unreadable_request(_: Request, error: RequestValidationError) -> JSONResponse:
    """A request whose fields do not fit the route: 422 naming each field and what it must be.

    FastAPI's own answer echoes the input back, and an input of NaN or Infinity (which Python's JSON reader
    accepts) cannot be written as JSON: that answer was a 500. This one names the fields, never their values.
    """
    problems = "; ".join(
        f"not valid JSON ({problem.get('ctx', {}).get('error', problem['msg'])})" if problem["type"] == "json_invalid"
        else f"{'.'.join(str(part) for part in problem['loc'][1:]) or problem['loc'][0]}: {problem['msg']}"
        for problem in error.errors())
    expected = f" The body must be JSON like {_APPLY_BODY}" if any(
        problem["loc"][0] == "body" for problem in error.errors()) else ""
    return JSONResponse({"detail": f"the request was not understood ({problems}).{expected}"}, status_code=422)


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


def _host_name(host: str) -> str:
    """The name in a Host header or an origin's netloc, without the port ("[::1]:8001" → "::1")."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class LocalRequestsOnly:
    """ASGI middleware: answer only requests for this machine or the served address, and state changes
    only from this page's origin with the session token (see the module).

    Example:
        >>> app.add_middleware(LocalRequestsOnly, hosts={"127.0.0.1"}, token=secrets.token_urlsafe())  # doctest: +SKIP
    """

    def __init__(self, app: Any, hosts: Iterable[str], token: str) -> None:
        self.app, self.hosts, self.token = app, {_host_name(host) for host in hosts}, token

    def _refusal(self, scope: dict[str, Any]) -> str | None:
        headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]}
        if _host_name(headers.get("host", "")) not in self.hosts:
            return ("this page answers requests for this machine only (Host must be 127.0.0.1, localhost or the "
                    "address it serves); open it at the address 'unfreeze clean' printed")
        if scope["method"] in _SAFE_METHODS:
            return None
        origin = headers.get("origin")
        if origin is not None and not self._is_served_origin(origin, scope["server"][1]):
            return "changes are accepted from the cleaning page itself only, not from another site"
        if not secrets.compare_digest(headers.get("x-unfreeze-token", "").encode(), self.token.encode()):
            return "this request lacks the page's session token: reload the page and try again"
        return None

    def _is_served_origin(self, origin: str, port: int) -> bool:
        try:
            parts = urlsplit(origin)
            return _host_name(parts.netloc) in self.hosts and parts.port == port
        except ValueError:  # a port that is no number or out of range, a broken IPv6 address: not this page
            return False

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        refusal = self._refusal(scope) if scope["type"] == "http" else None
        if refusal is None:
            await self.app(scope, receive, send)
            return
        body = json.dumps({"detail": refusal}).encode()
        await send({"type": "http.response.start", "status": 403,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


def create_clean_app(cleaner: Cleaner, hosts: Iterable[str] = (),
                     log: Callable[[str], object] | None = None) -> FastAPI:
    """The FastAPI app of the cleaning page for `cleaner` (see the module for the routes).

    Args:
        cleaner: The run's items and the changes applied to them.
        hosts: Addresses besides the loopback ones that requests may name (the --host served on).
        log: Called with one line per apply and per undo (None: not logged).

    Example:
        >>> app = create_clean_app(Cleaner("runs/pets", options, collect_items(learn, dls)))  # doctest: +SKIP
    """
    app = FastAPI(title=f"unfreeze clean: {cleaner.run_dir.name}", docs_url=None, redoc_url=None,
                  exception_handlers={RequestValidationError: _unreadable_request})
    token = secrets.token_urlsafe(32)  # one per server process: the page gets it when rendered
    app.add_middleware(LocalRequestsOnly, hosts={*LOOPBACK_HOSTS, *hosts}, token=token)
    app.add_middleware(SecurityHeaders)  # outermost: the refusals carry the policy too
    # Routes run in a thread pool: an image read landing between an apply's file move and the item's new
    # path found no file. Moving files and reading them take turns under this lock.
    files = threading.Lock()

    @app.get("/", response_class=HTMLResponse)
    def index() -> HTMLResponse:
        return HTMLResponse(render("clean.html", title=f"unfreeze clean: {cleaner.run_dir.name}", token=token))

    @app.get("/api/items")
    def items(split: str | None = None, label: str | None = None) -> dict[str, Any]:
        if split not in (None, "train", "valid"):
            raise HTTPException(400, f"split must be 'train' or 'valid', got {split!r}")
        with files:  # not half-way through an apply
            chosen = cleaner.visible(split, label)
            return {"run": cleaner.run_dir.name, "kind": cleaner.kind, "multi_label": cleaner.multi_label,
                    "classes": cleaner.vocab,
                    "items": [{**item.as_json(), "name": item.path.name, "image": f"/image/{item.id}"}
                              for item in chosen]}

    @app.get("/image/{item_id}")
    def image(item_id: int) -> Response:
        # Only the files of known items are served: the client names an id, never a path.
        with files:
            item = cleaner.items.get(item_id)
            try:
                if item is None or item_id in cleaner.hidden:
                    raise FileNotFoundError(item_id)
                data = item.path.read_bytes()
            except OSError:  # gone, or changed outside the page: not the server's fault
                raise HTTPException(404, f"no image for item {item_id}") from None
        # Typed by the name only for the raster formats training reads: a CSV may name any file, and one called
        # page.html or app.js must not reach the browser as a page or a script of this origin.
        guessed = mimetypes.guess_type(item.path.name)[0] if item.path.suffix.lower() in IMAGE_EXTENSIONS else None
        return Response(data, media_type=guessed or "application/octet-stream")

    @contextlib.contextmanager
    def logged(what: str) -> Iterator[dict[str, Any]]:
        started, outcome = time.perf_counter(), {}
        try:
            yield outcome
        except HTTPException as error:
            _log(f"{what}: refused ({error.status_code}): {error.detail}", started)
            raise
        _log(f"{what}: {outcome.get('line', 'done')}", started)

    def _log(line: str, started: float) -> None:
        if log is not None:
            log(f"unfreeze clean: {line} ({(time.perf_counter() - started) * 1000:.0f} ms)")

    @app.post("/api/apply")
    def apply(body: _ApplyBody) -> dict[str, Any]:
        # JSON has lists: a multi-label item's new classes become the tuple a dataset label is.
        changes = [Change(change.item, tuple(change.new_label) if isinstance(change.new_label, list)
                          else change.new_label) for change in body.changes]
        with logged(f"apply of {len(changes)} change(s)") as outcome, _answered_as_http(), files:
            done = cleaner.apply(changes)
            skipped = f", {len(done['skipped'])} skipped" if done["skipped"] else ""
            outcome["line"] = f"{done['relabelled']} relabelled, {done['removed']} removed{skipped}; log {done['log']}"
            return done

    @app.post("/api/undo")
    def undo() -> dict[str, Any]:
        with logged("undo") as outcome, _answered_as_http(), files:
            done = cleaner.undo()
            outcome["line"] = f"{done['restored']} change(s) reversed" + (
                f", {len(done['renamed'])} renamed to avoid a clash" if done["renamed"] else "")
            return done

    app.mount("/static", StaticFiles(directory=PAGES), name="static")
    return app
