"""`unfreeze serve` under attack and faults: the token and the size limits are checked before the body is
stored, a full disk is 507 and a log line, numeric options are bounded, pages carry a CSP, and a SIGTERM
drains the requests that arrived before it."""

from __future__ import annotations

import logging
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import torch
from app_helpers import serving

from cli_helpers import run_user_error
from unfreeze.apps import AppError
from unfreeze.apps.serve import ServeSettings, create_app, load_model

TIMEOUT = 30.0


@pytest.fixture(scope="module")
def learner(trained_app_run: Path) -> object:
    return load_model(trained_app_run)


@pytest.fixture
def small_tmpfs(make_tmpfs: Callable[[str, str], Path]) -> Path:
    """A 256 KiB tmpfs: a real full disk."""
    return make_tmpfs("small", "256k")


def raw_request(url: str, head: str, body: bytes = b"", timeout: float = 10.0) -> str:
    """Send a request's head (and `body`, maybe less than its Content-Length) on a socket; return the answer's
    status line and body as text. A server that waits for the rest of the body times out here."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(head.replace("\n", "\r\n").encode() + b"\r\n" + body)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
            if b"\r\n\r\n" in answer and b'"detail"' in answer and answer.rstrip().endswith(b"}"):
                break
    return answer.decode("latin-1")


def upload_head(url: str, length: int, token: str | None = None) -> str:
    authorization = f"Authorization: Bearer {token}\n" if token else ""
    return (f"POST /predict HTTP/1.1\nHost: {url.removeprefix('http://')}\n{authorization}"
            f"Content-Type: multipart/form-data; boundary=XYZ\nContent-Length: {length}\n")


def test_a_request_without_the_token_is_refused_before_its_body_is_read(learner: object) -> None:
    """FastAPI parsed the whole multipart body (into the temporary folder) before the token dependency ran:
    a client without the token could fill the disk. The answer came only after the whole body."""
    with serving(create_app(learner, "tiny", ServeSettings(token="s3cret"))) as url:
        answer = raw_request(url, upload_head(url, 5_000_000))  # announces 5 MB, sends none of it
        assert answer.startswith("HTTP/1.1 401"), answer
        wrong = raw_request(url, upload_head(url, 5_000_000, token="guess"))
        assert wrong.startswith("HTTP/1.1 401"), wrong


def test_a_content_length_over_the_limit_is_413_before_the_body_is_read(learner: object) -> None:
    with serving(create_app(learner, "tiny", ServeSettings(token="s3cret", max_upload_mb=1))) as url:
        answer = raw_request(url, upload_head(url, 10 * 2**30, token="s3cret"))  # 10 GiB announced
        assert answer.startswith("HTTP/1.1 413") and "larger than this server accepts" in answer, answer


def test_an_unauthenticated_upload_onto_a_small_disk_is_401_and_stores_nothing(
        learner: object, small_tmpfs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The old answer was '400 There was an error parsing the body' once the body had filled the disk."""
    monkeypatch.setattr(tempfile, "tempdir", str(small_tmpfs))
    with serving(create_app(learner, "tiny", ServeSettings(token="s3cret"))) as url:
        response = httpx.post(f"{url}/predict", files=[("file", ("big.png", os.urandom(2 * 2**20)))], timeout=TIMEOUT)
        assert response.status_code == 401
    assert list(small_tmpfs.iterdir()) == []


def test_a_full_temporary_disk_is_507_and_a_log_line(learner: object, small_tmpfs: Path,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    """A full temporary disk answered '400 There was an error parsing the body' and logged nothing."""
    monkeypatch.setattr(tempfile, "tempdir", str(small_tmpfs))
    with caplog.at_level(logging.WARNING, logger="unfreeze.serve"), \
            serving(create_app(learner, "tiny", ServeSettings())) as url:
        response = httpx.post(f"{url}/predict", files=[("file", ("big.png", os.urandom(2**20)))], timeout=TIMEOUT)
        assert response.status_code == 507 and "no space left" in response.json()["detail"]
        assert httpx.get(f"{url}/health", timeout=TIMEOUT).status_code == 200
    assert any("disk" in record.getMessage() and "full" in record.getMessage() for record in caplog.records)
    assert list(small_tmpfs.iterdir()) == []  # the request's folder is gone
    # Without a Content-Length (a chunked upload) the full disk is met while writing: 507 as well.
    with serving(create_app(learner, "tiny", ServeSettings())) as url:
        body = (b"--XYZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.png\"\r\n\r\n"
                + os.urandom(2**20) + b"\r\n--XYZ--\r\n")
        chunked = httpx.post(f"{url}/predict", content=iter([body[i:i + 65536] for i in range(0, len(body), 65536)]),
                             headers={"Content-Type": "multipart/form-data; boundary=XYZ"}, timeout=TIMEOUT)
        assert chunked.status_code == 507
    assert list(small_tmpfs.iterdir()) == []


def test_a_client_that_hangs_up_mid_upload_is_no_500_and_no_traceback(learner: object,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    """Starlette's ClientDisconnect left receive_uploads unhandled: a traceback in the server's log and a
    500 in its request log for every client that closed its connection before its body was complete."""
    lines: list[str] = []
    with caplog.at_level(logging.ERROR), serving(create_app(learner, "tiny", log=lines.append)) as url:
        host, port = url.removeprefix("http://").split(":")
        part = b'--XYZ\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n\r\n' + b"x" * 1000
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(upload_head(url, 100_000).replace("\n", "\r\n").encode() + b"\r\n" + part)
        deadline = time.monotonic() + 10
        while not (uploads := [line for line in lines if line.startswith("unfreeze serve: POST /predict")]):
            assert time.monotonic() < deadline, "the interrupted upload was never logged"
            time.sleep(0.05)
        assert httpx.get(f"{url}/health", timeout=TIMEOUT).status_code == 200
    assert len(uploads) == 1 and " 400, " in uploads[0], lines
    assert not [record for record in caplog.records if record.exc_info], caplog.text

def test_a_request_path_cannot_forge_a_log_line_or_send_terminal_escapes(learner: object) -> None:
    """The request log printed the percent-decoded path: %0A began a forged line of its own, %1B an escape
    sequence for the terminal that runs `unfreeze serve`."""
    lines: list[str] = []
    with serving(create_app(learner, "tiny", log=lines.append)) as url:
        for path in ("/x%0Aunfreeze%20serve:%20POST%20/predict%20200,%201%20file(s),%201%20ms", "/%1B[2J%1B[31mred"):
            assert httpx.get(f"{url}{path}", timeout=TIMEOUT).status_code == 404
    assert len(lines) == 2 and all(line.isprintable() for line in lines), lines
    assert lines[0].startswith("unfreeze serve: GET /x%0Aunfreeze%20serve") and "%1B" in lines[1]

@pytest.mark.parametrize("value", [1e308, float("inf"), float("nan"), 0, -1, 4096])
def test_an_unbounded_upload_limit_is_refused(value: float) -> None:
    """--max-upload-mb 1e308 made every upload a 500 (OverflowError converting it to bytes)."""
    with pytest.raises(AppError, match="--max-upload-mb"):
        ServeSettings(max_upload_mb=value)


@pytest.mark.parametrize(("option", "value"), [("--max-upload-mb", "1e308"), ("--max-upload-mb", "inf"),
                                               ("--batch-window-ms", "1e308"), ("--max-batch", "99999999999"),
                                               ("--top-k", "10000000")])
def test_numeric_serve_options_are_bounded(option: str, value: str, trained_app_run: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    line = run_user_error(["serve", str(trained_app_run), option, value], capsys)
    assert option in line and ("at most" in line or "from 1 to" in line)


def test_served_pages_carry_a_content_security_policy(learner: object) -> None:
    with serving(create_app(learner, "<b>tiny</b>", ServeSettings())) as url:
        page = httpx.get(f"{url}/", timeout=TIMEOUT)
        policy = page.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "'unsafe-inline'" not in policy and "frame-ancestors 'none'" in policy
        assert page.headers["x-content-type-options"] == "nosniff"
        assert "<title>unfreeze: &lt;b&gt;tiny&lt;/b&gt;</title>" in page.text  # the name, escaped
        assert "<script>" not in page.text  # the page's script is a file (/static/serve.js)
        assert "content-security-policy" in httpx.get(f"{url}/health", timeout=TIMEOUT).headers


@pytest.mark.slow
def test_sigterm_right_after_requests_arrive_answers_every_one(trained_app_run: Path) -> None:
    """Requests whose bytes were sent just before SIGTERM are answered (uvicorn's graceful shutdown), not
    dropped; the process exits 0."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "UNFREEZE_OFFLINE": "1"}
    process = subprocess.Popen([sys.executable, "-m", "unfreeze", "serve", str(trained_app_run), "--port", "0"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = process.stdout.readline() if process.stdout else ""
        found = re.search(r"http://[^/ ]+", line)
        assert found is not None, (line, process.stderr.read() if process.stderr else "")
        url = found.group(0)
        assert httpx.get(f"{url}/health", timeout=TIMEOUT).status_code == 200
        image = (trained_app_run.parent / "images" / "valid" / "ant" / "ant_0.png").read_bytes()
        # Large bodies keep the server busy receiving while the signal arrives.
        image += b"\0" * 2**20
        body = (b"--XYZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"ant.png\"\r\n"
                b"Content-Type: image/png\r\n\r\n" + image + b"\r\n--XYZ--\r\n")
        head = upload_head(url, len(body)).replace("\n", "\r\n").encode() + b"\r\n"
        host, port = url.removeprefix("http://").split(":")
        sockets = [socket.create_connection((host, int(port)), timeout=TIMEOUT) for _ in range(16)]
        for sock in sockets:
            sock.sendall(head + body)
        process.send_signal(signal.SIGTERM)  # at once: the requests are in the server's socket buffers
        answers: list[bytes] = [b""] * len(sockets)

        def read(index: int) -> None:
            with sockets[index]:
                while chunk := sockets[index].recv(65536):
                    answers[index] += chunk

        readers = [threading.Thread(target=read, args=(index,)) for index in range(len(sockets))]
        for reader in readers:
            reader.start()
        for reader in readers:
            reader.join(TIMEOUT)
        code = process.wait(timeout=TIMEOUT)
    finally:
        if process.poll() is None:
            process.kill()
    assert code == 0
    assert all(answer.startswith(b"HTTP/1.1 200") and b'"label"' in answer for answer in answers), answers


@pytest.mark.slow
def test_sigterm_during_an_upload_lets_it_finish(trained_app_run: Path) -> None:
    """An upload whose body is still arriving when SIGTERM comes is received and answered."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "UNFREEZE_OFFLINE": "1"}
    process = subprocess.Popen([sys.executable, "-m", "unfreeze", "serve", str(trained_app_run), "--port", "0"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = process.stdout.readline() if process.stdout else ""
        found = re.search(r"http://[^/ ]+", line)
        assert found is not None, line
        url = found.group(0)
        image = (trained_app_run.parent / "images" / "valid" / "bee" / "bee_0.png").read_bytes()
        body = (b"--XYZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"bee.png\"\r\n"
                b"Content-Type: image/png\r\n\r\n" + image + b"\r\n--XYZ--\r\n")
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=TIMEOUT) as sock:
            sock.sendall(upload_head(url, len(body)).replace("\n", "\r\n").encode() + b"\r\n" + body[:100])
            threading.Event().wait(0.5)  # the server has the head and part of the body
            process.send_signal(signal.SIGTERM)
            threading.Event().wait(0.5)
            sock.sendall(body[100:])
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        code = process.wait(timeout=TIMEOUT)
    finally:
        if process.poll() is None:
            process.kill()
    assert code == 0
    assert answer.startswith(b"HTTP/1.1 200") and b'"label"' in answer, answer


def test_a_learner_with_nan_weights_is_refused_before_serving(trained_app_run: Path) -> None:
    # Handed over in Python (an export with NaN weights is refused when loaded), it answered every request
    # with a 500: NaN probabilities are no JSON.
    broken = load_model(trained_app_run)
    with torch.no_grad():
        next(broken.model.parameters()).fill_(float("nan"))
    with pytest.raises(ValueError, match=r"NaN or infinite values in 1 of its \d+ tensors .*Serve a model whose"):
        create_app(broken, "broken")
