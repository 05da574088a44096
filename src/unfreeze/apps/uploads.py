"""Receiving `/predict`'s uploads: limits checked before and while the body arrives, nothing kept beyond them.

The request body is read here, from the stream, only after the route's token check passed; a parser
that stored the whole body first (FastAPI's `File()`) would let any client, token or not, fill the
temporary disk. Here:

- a Content-Length above the request limit is answered 413 before a byte of the body is read;
- each file is written into the request's own temporary folder while it arrives; the moment one exceeds
  the per-file limit its copy is deleted and the rest of it dropped unread into nothing, and it gets its
  own 413 (`Upload.error`) while the other files are answered; a request over the total is 413 as a whole;
- a body announced larger than the free space, or a full disk while writing (ENOSPC, EDQUOT), is 507,
  with one log line naming the folder;
- a body that is not multipart form data with fields named `file` is 4xx, never a 500; so is a body cut
  short by a client that closed its connection (its 400 goes only into the request log).

Example:
    >>> uploads = await receive_uploads(request, folder, UploadLimits(max_file_bytes=10 * 2**20))  # doctest: +SKIP
    >>> [upload.name for upload in uploads]  # doctest: +SKIP
    ['cat.jpg', 'dog.png']
"""

from __future__ import annotations

import errno
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect

from unfreeze._io import free_bytes
from unfreeze.data import IMAGE_EXTENSIONS

__all__ = ["Upload", "UploadError", "UploadLimits", "receive_uploads"]

logger = logging.getLogger("unfreeze.serve")
# The parser logs why a body is broken, then raises it, and the client gets it in its 400. Without a handler
# of its own, Python's last-resort handler printed that reason as a bare line among the request log's; a
# logging setup of the user's (the root logger's handlers) still receives it.
logging.getLogger("python_multipart").addHandler(logging.NullHandler())
_FULL_DISK = (errno.ENOSPC, errno.EDQUOT)
_PART_OVERHEAD = 1024  # a part's boundary and headers, counted in the request limit


@dataclass(frozen=True)
class UploadLimits:
    """The largest file, the most files per request, and so the largest request body.

    Example:
        >>> UploadLimits(max_file_bytes=1000, max_files=2).max_request_bytes
        6096
    """

    max_file_bytes: int
    max_files: int = 64

    @property
    def max_request_bytes(self) -> int:
        """Every file at its limit, plus the multipart framing."""
        return self.max_files * (self.max_file_bytes + _PART_OVERHEAD) + 2 * _PART_OVERHEAD


@dataclass
class Upload:
    """One received file: the client's name for it (shown back, never used as a path) and where it is stored."""

    name: str
    path: Path
    size: int = 0
    error: str | None = None  # why it was not kept (over the per-file limit): answered with `status`
    status: int = 200


class UploadError(Exception):
    """An upload refused: the HTTP status and the message for the client."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status, self.detail = status, detail


def _full_disk(folder: Path, reason: str) -> UploadError:
    """The 507 answer for a temporary disk without room, and its log line for whoever runs the server."""
    logger.warning("unfreeze serve: upload refused: the disk of %s is full (%s); free space there or set TMPDIR "
                   "to a larger disk", folder, reason)
    return UploadError(507, "the server has no space left to receive this upload. Try again later")


def _safe_suffix(file_name: str) -> str:
    # Only a known image suffix is kept: the stored name never comes from the client.
    suffix = Path(file_name).suffix.lower()
    return suffix if suffix in IMAGE_EXTENSIONS else ""


@dataclass
class _Receiver:
    """The parser's callbacks: one part's headers, then its data into a file (or nowhere)."""

    folder: Path
    limits: UploadLimits
    uploads: list[Upload] = field(default_factory=list)
    header_field: bytes = b""
    header_value: bytes = b""
    headers: dict[bytes, bytes] = field(default_factory=dict)
    current: Upload | None = None
    handle: IO[bytes] | None = None

    def callbacks(self) -> dict[str, Any]:
        return {"on_part_begin": self.part_begin, "on_header_field": self.on_field, "on_header_value": self.on_value,
                "on_header_end": self.header_end, "on_headers_finished": self.headers_finished,
                "on_part_data": self.part_data, "on_part_end": self.part_end}

    def part_begin(self) -> None:
        self.headers, self.current = {}, None

    def on_field(self, data: bytes, start: int, end: int) -> None:
        self.header_field += data[start:end]

    def on_value(self, data: bytes, start: int, end: int) -> None:
        self.header_value += data[start:end]

    def header_end(self) -> None:
        self.headers[self.header_field.lower()] = self.header_value
        self.header_field = self.header_value = b""

    def headers_finished(self) -> None:
        _, options = parse_options_header(self.headers.get(b"content-disposition", b""))
        if options.get(b"name") != b"file":
            return  # another form field: its bytes count towards the request limit, and are dropped
        if len(self.uploads) >= self.limits.max_files:
            raise UploadError(413, f"more than {self.limits.max_files} files in one request. Send fewer per "
                                   "request, or use 'unfreeze predict' for folders")
        name = options.get(b"filename", b"").decode("utf-8", "replace") or f"file {len(self.uploads)}"
        self.current = Upload(name, self.folder / f"{len(self.uploads):03d}{_safe_suffix(name)}")
        self.uploads.append(self.current)
        self.handle = self.current.path.open("wb")

    def part_data(self, data: bytes, start: int, end: int) -> None:
        if self.current is None or self.handle is None:
            return
        self.current.size += end - start
        if self.current.size > self.limits.max_file_bytes:
            # This file alone is refused: its partial copy goes, its remaining bytes are dropped as they come
            # (the request limit still bounds them), and the request's other files are answered.
            self.close()
            self.current.path.unlink(missing_ok=True)
            self.current.error = (f"{self.current.name}: larger than the limit of "
                                  f"{self.limits.max_file_bytes / 2**20:g} MiB per file. Send a smaller image, or "
                                  "restart with a larger --max-upload-mb")
            self.current.status = 413
            return
        self.handle.write(data[start:end])

    def part_end(self) -> None:
        self.close()

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None


async def receive_uploads(request: Any, folder: Path, limits: UploadLimits) -> list[Upload]:
    """Stream the multipart body of `request` into `folder` (see the module); return the files' fields.

    Raises:
        UploadError: 413 over a limit, 422 for a body that is not multipart form data or has no
            field named `file` (400: broken multipart, or a body cut short), 507 when the disk is full.
            What was written stays in `folder` (the caller's temporary folder, removed with it).

    Example:
        >>> await receive_uploads(request, Path(folder), UploadLimits(10 * 2**20))  # doctest: +SKIP
    """
    too_large = UploadError(413, f"the request is larger than this server accepts ({limits.max_files} files of at "
                                 f"most {limits.max_file_bytes / 2**20:g} MiB). Send fewer or smaller images")
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > limits.max_request_bytes):
        raise too_large
    free = free_bytes(folder)
    if length is not None and free is not None and int(length) > free:  # it cannot fit: refused unread
        raise _full_disk(folder, "not enough free space for the announced body")
    kind, options = parse_options_header(request.headers.get("content-type", ""))
    if kind != b"multipart/form-data" or not options.get(b"boundary"):
        raise UploadError(422, "send the images as multipart/form-data fields named 'file', e.g. "
                               "curl -F file=@cat.jpg URL/predict")
    receiver = _Receiver(folder, limits)
    try:
        parser = MultipartParser(options[b"boundary"], receiver.callbacks())
        received = 0
        async for chunk in request.stream():
            received += len(chunk)
            if received > limits.max_request_bytes:
                raise too_large
            parser.write(chunk)
        parser.finalize()
    except (MultipartParseError, ValueError) as error:
        raise UploadError(400, f"the body is not valid multipart form data ({error}). Send the images as fields "
                               "named 'file'") from None
    except ClientDisconnect:  # the client's mistake, not the server's: a 400 in the log, no traceback
        raise UploadError(400, "the connection closed before the whole body arrived. Send the request "
                               "again") from None
    except OSError as error:
        if error.errno not in _FULL_DISK:
            raise
        raise _full_disk(folder, error.strerror or "no space left") from None
    finally:
        receiver.close()
    if not receiver.uploads:
        raise UploadError(422, "no field named 'file' in the form. Send each image as a field 'file', e.g. "
                               "curl -F file=@cat.jpg URL/predict")
    return receiver.uploads
