"""`unfreeze serve` as users run it: start-up errors in one line, and a SIGTERM that finishes in-flight work."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from cli_helpers import run_user_error
from unfreeze.apps.serve import bind_socket, exposure_warning


def test_a_pickle_or_a_truncated_model_fails_at_start_as_predict_does(tmp_path: Path, trained_app_run: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    import pickle

    pickled = tmp_path / "model.pkl"
    pickled.write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
    served = run_user_error(["serve", str(pickled), "--port", "0"], capsys)
    predicted = run_user_error(["predict", str(pickled), str(pickled)], capsys)
    assert served == predicted and "pickle" in served
    truncated = tmp_path / "model.unfreeze"
    truncated.write_bytes((trained_app_run / "model.unfreeze").read_bytes()[:5000])
    assert "truncated" in run_user_error(["serve", str(truncated), "--port", "0"], capsys)
    assert "not found" in run_user_error(["serve", str(tmp_path / "missing.unfreeze")], capsys)


def test_a_port_in_use_is_named(trained_app_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    taken = bind_socket("127.0.0.1", 0)
    try:
        port = taken.getsockname()[1]
        line = run_user_error(["serve", str(trained_app_run), "--port", str(port)], capsys)
    finally:
        taken.close()
    assert f"port {port} on 127.0.0.1 is in use" in line and "--port" in line



def test_a_runtime_that_cannot_run_the_model_fails_at_start_in_one_line(trained_app_run: Path,
                                                                        monkeypatch: pytest.MonkeyPatch,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """OpenVINO cannot convert the tiny 16 px model (a 1x1 feature map under a 2x2 pooling): --runtime openvino
    gave a 40-line C++ conversion log as a traceback. Its compiler's failure is stood in for here, so that a
    later OpenVINO that converts the model cannot start a server that never returns."""
    import unfreeze.inference.runtime as runtime_module

    def refuse(path: Path, runtime: str) -> object:
        raise RuntimeError("Exception from src/inference/src/cpp/core.cpp:132:\nModel wasn't fully converted.\n"
                           "-- Conversion is failed for: AveragePool-17, Conv-17\n")

    monkeypatch.setattr(runtime_module, "installed_runtimes", lambda: ["openvino", "onnx", "torch"])
    monkeypatch.setattr(runtime_module, "_compile", refuse)
    images = str(trained_app_run.parent / "images" / "valid" / "ant")
    for argv in (["serve", str(trained_app_run), "--runtime", "openvino", "--port", "0"],
                 ["predict", str(trained_app_run), images, "--runtime", "openvino"]):
        line = run_user_error(argv, capsys)
        assert "openvino cannot run this model (Conversion is failed for: AveragePool-17, Conv-17)" in line
        assert "--runtime torch" in line

def _start(argv: list[str], env_extra: dict[str, str] | None = None) -> tuple[subprocess.Popen[str], str]:
    """Start `unfreeze serve ... --port 0` in a subprocess; return it and its URL once it listens."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "UNFREEZE_OFFLINE": "1", **(env_extra or {})}
    process = subprocess.Popen([sys.executable, "-m", "unfreeze", *argv, "--port", "0"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=env)
    line = process.stdout.readline() if process.stdout else ""  # "Serving ... at http://127.0.0.1:PORT/ ..."
    if "http://" not in line:
        process.kill()
        raise RuntimeError(f"the server did not start: {line!r} {process.communicate(timeout=30)}")
    return process, re.search(r"http://[^/ ]+", line).group(0)  # type: ignore[union-attr]


@pytest.mark.slow
def test_sigterm_finishes_the_request_in_flight_and_exits_0(trained_app_run: Path) -> None:
    # A 1.5 s batch window keeps the request waiting inside the server when SIGTERM arrives.
    process, url = _start(["serve", str(trained_app_run), "--batch-window-ms", "1500"])
    image = (trained_app_run.parent / "images" / "valid" / "ant" / "ant_0.png").read_bytes()
    answers: list[httpx.Response] = []
    try:
        sender = threading.Thread(target=lambda: answers.append(
            httpx.post(f"{url}/predict", files={"file": ("ant.png", image)}, timeout=30)))
        sender.start()
        time.sleep(0.5)
        process.send_signal(signal.SIGTERM)
        sender.join(30)
        code = process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert code == 0, process.stderr.read() if process.stderr else ""
    assert answers and answers[0].status_code == 200 and answers[0].json()["predictions"][0]["label"]
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/health", timeout=5)


@pytest.mark.slow
def test_ctrl_c_exits_0(trained_app_run: Path) -> None:
    process, url = _start(["serve", str(trained_app_run)])
    try:
        assert httpx.get(f"{url}/health", timeout=30).status_code == 200
        process.send_signal(signal.SIGINT)
        code = process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert code == 0


def test_only_a_server_others_can_reach_without_a_token_is_warned_about() -> None:
    assert exposure_warning("127.0.0.1", None) is None and exposure_warning("localhost", None) is None
    assert "--token" in (exposure_warning("0.0.0.0", None) or "")
    assert exposure_warning("0.0.0.0", "s3cret") is None


@pytest.mark.slow
def test_the_clean_command_serves_the_runs_items_until_sigterm(run_copy: Callable[[], tuple[Path, Path]]) -> None:
    run, _ = run_copy()
    process, url = _start(["clean", str(run), "--host", "0.0.0.0"])
    try:
        answer = httpx.get(f"{url.replace('0.0.0.0', '127.0.0.1')}/api/items?split=valid", timeout=30).json()
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    stderr = process.stderr.read() if process.stderr else ""
    assert "0.0.0.0 is reachable from other machines and the cleaning page has no authentication" in stderr
    assert "computing the losses: train, 24 images ..." in stderr  # the progress, while the page is not up
    assert code == 0 and answer["kind"] == "folder" and answer["classes"] == ["ant", "bee", "cat"]
    assert len(answer["items"]) == 12 and {item["split"] for item in answer["items"]} == {"valid"}


def test_without_the_serve_extra_the_pip_line_is_given(trained_app_run: Path, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    import unfreeze.apps

    monkeypatch.setitem(sys.modules, "fastapi", None)  # as if FastAPI were not installed
    monkeypatch.delitem(sys.modules, "unfreeze.apps.serve", raising=False)
    monkeypatch.delattr(unfreeze.apps, "serve", raising=False)
    line = run_user_error(["serve", str(trained_app_run)], capsys)
    assert "pip install 'unfreeze[serve]'" in line
    assert "pip install 'unfreeze[serve]'" in run_user_error(["clean", str(trained_app_run)], capsys)


def test_serve_says_its_runtime_in_the_start_line_and_health(trained_app_run: Path) -> None:
    pytest.importorskip("onnxruntime")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "UNFREEZE_OFFLINE": "1"}
    process = subprocess.Popen([sys.executable, "-m", "unfreeze", "serve", str(trained_app_run), "--runtime", "onnx",
                                "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = process.stdout.readline() if process.stdout else ""
        assert "3 classes, cpu, runtime onnx) at http://" in line
        url = re.search(r"http://[^/ ]+", line).group(0)  # type: ignore[union-attr]
        assert httpx.get(f"{url}/health", timeout=30).json()["runtime"] == "onnx"
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


def test_accepted_connections_send_small_writes_at_once() -> None:
    """Without TCP_NODELAY a kept-alive connection's response (headers, then body: two writes) waits for the
    client's delayed ACK, 40 ms a request on Linux. asyncio sets it on each accepted socket only when the
    listening socket says it is TCP, which a socket made with socket.socket(family, SOCK_STREAM) does not."""
    import asyncio
    import socket

    async def accepted_nodelay() -> int:
        flags: list[int] = []
        ready = asyncio.Event()

        class Note(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                flags.append(transport.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
                ready.set()

        server = await asyncio.get_running_loop().create_server(Note, sock=bind_socket("127.0.0.1", 0))
        async with server:
            _, writer = await asyncio.open_connection(*server.sockets[0].getsockname()[:2])
            await asyncio.wait_for(ready.wait(), 10)
            writer.close()
        return flags[0]

    assert asyncio.run(accepted_nodelay()) != 0


@pytest.mark.slow
def test_a_broken_upload_leaves_only_its_request_line_on_the_console(trained_app_run: Path) -> None:
    """The multipart parser also logged its reason, which Python's last-resort handler printed as a bare line
    ("Expected boundary character 45, got 137 at index 2") among the request log's."""
    process, url = _start(["serve", str(trained_app_run), "--runtime", "torch"])
    try:
        response = httpx.post(f"{url}/predict", content=b"\x89PNG, not multipart",
                              headers={"content-type": "multipart/form-data; boundary=x"}, timeout=30)
        assert response.status_code == 400 and "not valid multipart form data" in response.json()["detail"]
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    assert "POST /predict 400" in out + err and "Expected boundary" not in out + err
