"""`unfreeze serve`: a FastAPI app over an exported model, an upload page, and the uvicorn runner.

    GET  /          the upload page (pages/index.html; no CDN, works offline)
    GET  /health    {"model", "arch", "classes", "task", "top_k", "device", "batching"}
    POST /predict   multipart field `file`, one or more; ?top_k=K (default --top-k) →
                    {"schema_version": 1, "predictions": [record, ...]} in the order the files were sent,
                    each a prediction record (inference/records.py: file, label, probability, top_k, error,
                    unknown and ood_score: null for a model exported without an unknown score)

The handlers are a thin layer over `predict_batch`, the function behind `unfreeze predict`: uploads are
streamed into a temporary folder within the size limits (uploads.py), the `MicroBatcher` groups
concurrent requests into one model call, and each file gets its row back (an undecodable one an
`"error"` entry). User mistakes answer 4xx with a JSON `detail`: 401 without the token (checked before
any of the body is read), 413 for a request over the size limit (before it is stored); a file over the
per-file limit gets its own error record with `"status": 413` and the others are answered (413 for the
request only when no file was small enough); 422 when no file could be read; a full disk is 507 and a
log line. Each request writes one log line (method, path, status, files, ms). Every response carries a
Content-Security-Policy (templates.py) and nosniff.

Example:
    >>> app = create_app(load_learner("runs/pets/model.unfreeze"), name="pets")  # doctest: +SKIP
    >>> serve("runs/pets", port=8000)  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import signal
import socket
import tempfile
import threading
import time
import urllib.parse
import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
import uvicorn
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from unfreeze.apps.batching import BatchSettings, MicroBatcher
from unfreeze.apps.errors import AppError
from unfreeze.apps.templates import PAGES, SERVED_PAGE_POLICY, render
from unfreeze.apps.uploads import UploadError, UploadLimits, receive_uploads
from unfreeze.inference import SCHEMA_VERSION, error_record, predict_batch, prediction_record
from unfreeze.inference.export_checks import non_finite_tensors
from unfreeze.inference.predict import trust_of
from unfreeze.inference.runtime import runtime_predictor
from unfreeze.runs import model_file
from unfreeze.tasks import MultiLabel
from unfreeze.train.builders import load_learner

__all__ = ["PAGES", "RequestLog", "SecurityHeaders", "ServeSettings", "bind_socket", "create_app",
           "exposure_warning", "health_summary", "load_model", "run_app", "serve"]

_MAX_FILES = 64  # per request: a page uploads a few photos; more is a script that should use predict
MAX_UPLOAD_MB = 1024  # per file: an image larger than 1 GiB is no photo; 64 of them bound a request's disk use
MAX_TOP_K = 1000


@dataclass(frozen=True)
class ServeSettings:
    """What `unfreeze serve` exposes and how: top-k, the upload limit, the token and the batching.

    Attributes:
        top_k: Classes listed per image.
        max_upload_mb: The largest accepted file in MiB (2**20 bytes), whatever the "mb" in the name says.
        token: The bearer token requests must carry; None: no token.
        batching: How concurrent requests are gathered into batches.

    Example:
        >>> ServeSettings(top_k=3, max_upload_mb=2).max_upload_bytes
        2097152
    """

    top_k: int = 5
    max_upload_mb: float = 10.0
    token: str | None = None
    batching: BatchSettings = field(default_factory=BatchSettings)

    def __post_init__(self) -> None:
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or not 1 <= self.top_k <= MAX_TOP_K:
            raise AppError(f"--top-k must be a whole number from 1 to {MAX_TOP_K}, got {self.top_k!r}. Pass e.g. "
                           "--top-k 5")
        if not 0 < self.max_upload_mb <= MAX_UPLOAD_MB:  # also refuses NaN and infinity
            raise AppError(f"--max-upload-mb must be > 0 and at most {MAX_UPLOAD_MB}, got {self.max_upload_mb!r}. "
                           "Pass e.g. --max-upload-mb 10")
        if self.token is not None and not self.token.strip():
            raise AppError("--token is empty. Pass a secret clients will send as 'Authorization: Bearer SECRET'")

    @property
    def max_upload_bytes(self) -> int:
        """The upload limit in bytes (--max-upload-mb × 2**20)."""
        return int(self.max_upload_mb * 2**20)


def load_model(model: str | Path) -> Any:
    """The Learner of a run directory (its model.unfreeze) or of a .unfreeze file, on the best device.

    Raises:
        ExportError: The same one-line errors as `unfreeze predict` (a pickle, a truncated file, ...).

    Example:
        >>> learn = load_model("runs/pets")  # doctest: +SKIP
    """
    return load_learner(model_file(model), cpu=False)


def _response_row(row: dict[str, Any], file_name: str, top_k: int) -> dict[str, Any]:
    """A `predict_batch` row as the API's prediction record (the temporary path never shown)."""
    if row["error"] is not None:
        reason = str(row["error"]).replace(f" '{row['path']}'", "").replace(str(row["path"]), file_name)
        row = {**row, "error": f"not a readable image ({reason})"}
    return prediction_record(row, top_k, file=file_name)


class RequestLog:
    """ASGI middleware: one line per HTTP request, "METHOD PATH STATUS, N files, MS ms", to `log`.

    The file count is what the handler put in `request.state.files` (0 for requests without uploads).

    Example:
        >>> app.add_middleware(RequestLog, log=print)  # doctest: +SKIP
    """

    def __init__(self, app: Any, log: Callable[[str], object]) -> None:
        self.app, self.log = app, log

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status = time.perf_counter(), [500]

        async def send_noting_status(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_noting_status)
        finally:
            files = scope.get("state", {}).get("files", 0)
            # The path as a URL writes it: decoded, a client's %0A would begin a forged line and %1B a terminal escape.
            path = urllib.parse.quote(scope["path"], safe="/:@!$&'()*+,;=")
            self.log(f"unfreeze serve: {scope['method']} {path} {status[0]}, {files} file(s), "
                     f"{(time.perf_counter() - started) * 1000:.0f} ms")


class SecurityHeaders:
    """ASGI middleware: every response says what its page may load (Content-Security-Policy), that its
    type is not to be guessed, and that no other site may frame it.

    Example:
        >>> app.add_middleware(SecurityHeaders)  # doctest: +SKIP
    """

    _HEADERS: ClassVar[list[tuple[bytes, bytes]]] = [
        (b"content-security-policy", SERVED_PAGE_POLICY.encode()), (b"x-content-type-options", b"nosniff"),
        (b"x-frame-options", b"DENY"), (b"referrer-policy", b"no-referrer")]

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *self._HEADERS]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _check_finite_weights(learner: Any) -> None:
    # NaN weights answer NaN probabilities, which no JSON can carry: every request would get a 500. An export
    # with them is refused when loaded; a learner handed over in Python is checked here, before serving.
    model = getattr(learner, "model", None)
    if isinstance(model, torch.nn.Module):
        state = model.state_dict()
        bad = non_finite_tensors(state)
        if bad:
            raise ValueError(f"The model holds NaN or infinite values in {len(bad)} of its {len(state)} tensors (for "
                             f"example {', '.join(bad[:3])}): every prediction would be NaN. Serve a model whose "
                             "training loss stayed finite (an earlier checkpoint, or train again with a lower LR).")


def create_app(learner: Any, name: str = "model", settings: ServeSettings | None = None,
               log: Callable[[str], object] | None = None) -> FastAPI:
    """The FastAPI app serving `learner` (see the module for its routes).

    Args:
        learner: A Learner (usually from `load_model`); it is only read.
        name: The model's name shown on the page and in /health.
        settings: Top-k, upload limit, token, batching.
        log: Called with one line per request (None: no request log).

    Example:
        >>> app = create_app(load_model("runs/pets"), "pets", ServeSettings(top_k=3))  # doctest: +SKIP
    """
    settings = settings or ServeSettings()
    _check_finite_weights(learner)

    def predict_files(paths: list[Path]) -> list[dict[str, Any]]:
        with warnings.catch_warnings():
            # Unreadable uploads are answered in their rows; a server log line per request adds nothing.
            warnings.simplefilter("ignore")
            # Every row carries the most alternatives a request may ask for; each response keeps its own top_k.
            return list(predict_batch(learner, paths, bs=max(len(paths), 1), top_k=max(most_top_k, 2)))

    most_top_k = min(MAX_TOP_K, len(learner.dls.vocab))

    batcher: MicroBatcher[Path, dict[str, Any]] = MicroBatcher(predict_files, settings.batching)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async with batcher:  # at shutdown: every queued request is answered first
            yield

    app = FastAPI(title=f"unfreeze: {name}", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.batcher = batcher
    app.add_middleware(SecurityHeaders)
    if log is not None:
        app.add_middleware(RequestLog, log=log)  # outermost: it sees every answer, refusals included
    limits = UploadLimits(settings.max_upload_bytes, _MAX_FILES)

    def authorized(request: Request) -> None:
        if settings.token is None:
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(given.encode(), settings.token.encode()):
            raise HTTPException(401, "this server needs a token: send the header 'Authorization: Bearer TOKEN' "
                                     "(on the page: add #token=TOKEN to the address)")

    trust = trust_of(learner)
    health = {"model": name, "arch": getattr(learner.model, "arch", type(learner.model).__name__),
              "classes": list(learner.dls.vocab), "task": learner.task.config()["name"],
              "multi_label": isinstance(learner.task, MultiLabel), "top_k": settings.top_k,
              # The probability at or above which a class is in an answer's label (None: single-label's top class).
              "decision_threshold": learner.task.named_threshold(list(learner.dls.vocab))
              if isinstance(learner.task, MultiLabel) else None,
              "device": str(learner.device), "runtime": getattr(learner, "runtime", "torch"),
              "max_upload_mb": settings.max_upload_mb,
              # What the answers' probabilities and unknown flags mean (None: an export without them).
              "temperature": trust.temperature, "temperature_se": trust.temperature_se,
              "unknown_threshold": trust.threshold if trust.has_score else None,
              "unknown_rate": trust.unknown_rate if trust.has_score else None,
              "batching": {"enabled": settings.batching.enabled, "window_ms": settings.batching.window_ms,
                           "max_batch": settings.batching.max_batch}}

    @app.get("/", response_class=HTMLResponse)
    def index() -> HTMLResponse:
        return HTMLResponse(render("index.html", title=f"unfreeze: {name}"))

    @app.get("/health", dependencies=[Depends(authorized)])
    def get_health() -> dict[str, Any]:
        return health

    def requested_top_k(request: Request) -> int:
        text = request.query_params.get("top_k")
        if text is None:
            return settings.top_k
        # ASCII digits only and few of them: isdigit() also accepts "²" and "٣", which int() refuses or reads,
        # and int() refuses a string of more than 4300 digits.
        if not (text.isascii() and text.isdigit() and len(text) <= 6) or not 1 <= int(text) <= MAX_TOP_K:
            raise HTTPException(422, f"top_k must be a whole number from 1 to {MAX_TOP_K}, got {text[:20]!r}. "
                                     "Ask e.g. /predict?top_k=3")
        return min(int(text), len(learner.dls.vocab))

    @app.post("/predict", dependencies=[Depends(authorized)])
    async def post_predict(request: Request) -> JSONResponse:
        top_k = requested_top_k(request)  # a wrong ?top_k= is refused before the body is read
        # The body is read here, after the token check, and only within the limits (uploads.py).
        with tempfile.TemporaryDirectory(prefix="unfreeze-serve-") as folder:
            try:
                uploads = await receive_uploads(request, Path(folder), limits)
            except UploadError as error:
                return JSONResponse({"detail": error.detail}, status_code=error.status)
            request.state.files = len(uploads)
            kept = [upload for upload in uploads if upload.error is None]
            rows = iter(await batcher.submit([upload.path for upload in kept]) if kept else [])
        # In the order the files were sent: each kept file's row, each refused one its own error and status.
        predictions = [_response_row(next(rows), upload.name, top_k) if upload.error is None
                       else error_record(upload.name, upload.error, status=upload.status) for upload in uploads]
        answer: dict[str, Any] = {"schema_version": SCHEMA_VERSION, "predictions": predictions}
        if not kept:
            detail = "; ".join(upload.error for upload in uploads if upload.error)
            return JSONResponse({"detail": detail, **answer}, status_code=413)
        if all(prediction["error"] is not None for prediction in predictions):
            return JSONResponse({"detail": "no uploaded file could be read as an image. Send JPEG, PNG, WebP, "
                                           "BMP, GIF or TIFF files", **answer}, status_code=422)
        return JSONResponse(answer)

    app.mount("/static", StaticFiles(directory=PAGES), name="static")
    return app


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (port 0: any free port).

    Raises:
        AppError: The port is in use or the address cannot be bound, saying which and what to pass.

    Example:
        >>> bind_socket("127.0.0.1", 0).getsockname()[0]
        '127.0.0.1'
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # Said to be TCP, so that asyncio sets TCP_NODELAY on every accepted connection: without it a kept-alive
    # connection's answer (headers, then body) waits 40 ms for the client's delayed acknowledgement.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        if error.errno == errno.EADDRINUSE:
            raise AppError(f"port {port} on {host} is in use by another program. Pass another --port, "
                           "or --port 0 for any free one") from None
        raise AppError(f"cannot listen on {host}:{port} ({error.strerror}). Pass another --host or --port") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


class _GracefulServer(uvicorn.Server):
    """uvicorn's server, except that the SIGTERM or Ctrl-C that stopped it is not raised again after the
    graceful shutdown: in-flight requests are finished and the command exits with code 0."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        original = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)


def _set_cpu_threads(learner: Any) -> None:
    """All the cores this process may use for the model on a CPU, unless the user chose (OMP_NUM_THREADS)."""
    if learner.device.type == "cpu" and "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def run_app(app: FastAPI, sock: socket.socket) -> None:
    """Serve `app` on the bound socket until SIGTERM or Ctrl-C, then finish in-flight requests and return.

    Example:
        >>> run_app(create_app(load_model("runs/pets")), bind_socket("127.0.0.1", 8000))  # doctest: +SKIP
    """
    config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=30)
    _GracefulServer(config).run(sockets=[sock])


def serve(model: str | Path, host: str = "127.0.0.1", port: int = 8000, settings: ServeSettings | None = None,
          announce: Callable[[str], object] = print, runtime: str | None = None) -> None:
    """Load `model` once, bind host:port and serve the upload page and API until SIGTERM or Ctrl-C.

    Everything that can fail on the user's side (the model file, the port) fails before the server
    starts, with a one-line message.

    Args:
        model: A run directory or a .unfreeze file.
        host: The address to bind; anything but a loopback address is reachable by others.
        port: The TCP port; 0 picks a free one (the address is announced).
        settings: Top-k, upload limit, token, batching.
        announce: Where the address, warnings and one line per request are printed.
        runtime: "torch", "onnx" or "openvino" (`unfreeze.inference.runtime`); None: torch on a GPU, else
            the fastest installed one that runs the model.

    Example:
        >>> serve("runs/pets", port=8000)  # doctest: +SKIP
        Serving runs/pets (resnet34, 37 classes, cpu) at http://127.0.0.1:8000/ (Ctrl-C stops it)
    """
    settings = settings or ServeSettings()
    learner = load_model(model)
    if runtime is None and learner.device.type != "cpu":
        runtime = "torch"  # a GPU's PyTorch beats the CPU runtimes; else the fastest that runs the model
    learner = runtime_predictor(learner, model_file(model), runtime)
    _set_cpu_threads(learner)
    sock = bind_socket(host, port)
    bound_host, bound_port = sock.getsockname()[:2]
    warning = exposure_warning(host, settings.token)
    if warning is not None:
        announce(f"unfreeze: warning: {warning}")
    name = Path(model).name if Path(model).is_dir() else Path(model).stem
    announce(f"Serving {model} ({health_summary(learner)}) at http://{_url_host(bound_host)}:{bound_port}/ "
             "(Ctrl-C stops it)")
    run_app(create_app(learner, name, settings, log=announce), sock)


def exposure_warning(host: str, token: str | None) -> str | None:
    """The warning for a server others can reach without a token, or None (loopback, or a token set).

    Example:
        >>> exposure_warning("127.0.0.1", None) is None
        True
        >>> exposure_warning("0.0.0.0", None).startswith("0.0.0.0 is reachable")
        True
    """
    if host in ("127.0.0.1", "localhost", "::1") or token is not None:
        return None
    return (f"{host} is reachable from other machines and this server has no authentication: anyone who can reach "
            "it can use the model. Add --token-file PATH (or set UNFREEZE_TOKEN) to require a token")


def health_summary(learner: Any) -> str:
    """'arch, N classes, device, runtime' for the start-up line.

    Example:
        >>> health_summary(load_model("runs/pets"))  # doctest: +SKIP
        'resnet34, 37 classes, cpu, runtime onnx'
    """
    arch = getattr(learner.model, "arch", type(learner.model).__name__)
    return f"{arch}, {len(learner.dls.vocab)} classes, {learner.device}, runtime {getattr(learner, 'runtime', 'torch')}"


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
