"""Issue 25 part 5: load_learner takes a run directory as the CLI does; serve's token from a file or the
environment (not only the command line, where 'ps' shows it); top-level help lines that say what each does."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from cli_helpers import run_user_error
from unfreeze import load_learner
from unfreeze.cli import build_parser
from unfreeze.inference import ExportError


def test_load_learner_accepts_a_run_directory(trained_app_run: Path, tmp_path: Path) -> None:
    """It said "No export at RUN" where every CLI command accepts RUN."""
    image = trained_app_run.parent / "images" / "valid" / "cat" / "cat_0.png"
    from_folder = load_learner(trained_app_run).predict(image)
    from_file = load_learner(trained_app_run / "model.unfreeze").predict(image)
    assert from_folder[0] == from_file[0] and bool((from_folder[2] == from_file[2]).all())
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / "config.json").write_text("{}")
    with pytest.raises(ExportError, match=r"folder without model\.unfreeze .*has not finished.*holds no \.unfreeze"):
        load_learner(unfinished)


def _serve(argv: list[str], env_extra: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    env = {key: value for key, value in os.environ.items() if key != "UNFREEZE_TOKEN"}
    env.update({"OMP_NUM_THREADS": "1", "UNFREEZE_OFFLINE": "1", **env_extra})
    process = subprocess.Popen([sys.executable, "-m", "unfreeze", "serve", *argv, "--port", "0"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    line = process.stdout.readline() if process.stdout else ""
    if "http://" not in line:
        process.kill()
        raise RuntimeError(f"the server did not start: {line!r} {process.communicate(timeout=30)}")
    return process, line.split(" at ")[1].split("/ ")[0]


@pytest.mark.slow
@pytest.mark.parametrize("source", ["file", "environment"])
def test_serve_takes_its_token_from_a_file_or_the_environment(trained_app_run: Path, tmp_path: Path,
                                                              source: str) -> None:
    secret = "s3cret-from-" + source
    token_file = tmp_path / "token"
    token_file.write_text(secret + "\n")
    argv = [str(trained_app_run), *(["--token-file", str(token_file)] if source == "file" else [])]
    process, url = _serve(argv, {"UNFREEZE_TOKEN": secret} if source == "environment" else {})
    image = (trained_app_run.parent / "images" / "valid" / "ant" / "ant_0.png").read_bytes()
    try:
        refused = httpx.post(f"{url}/predict", files={"file": ("ant.png", image)}, timeout=30)
        answered = httpx.post(f"{url}/predict", files={"file": ("ant.png", image)}, timeout=30,
                              headers={"Authorization": f"Bearer {secret}"})
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert refused.status_code == 401 and answered.status_code == 200
    assert secret not in " ".join(process.args)  # nothing in 'ps'


@pytest.mark.parametrize(("extra", "content", "message"), [
    (["--token", "a"], "b", "--token and --token-file both give the token"),
    ([], "", "is empty"),
    ([], b"\xff\xfe", "is not text"),
])
def test_bad_token_sources_are_user_errors(trained_app_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                           extra: list[str], content: str | bytes, message: str) -> None:
    token_file = tmp_path / "token"
    token_file.write_bytes(content.encode() if isinstance(content, str) else content)
    assert message in run_user_error(["serve", str(trained_app_run), *extra, "--token-file", str(token_file)], capsys)


@pytest.mark.parametrize("token", ["pässwort", "two words", "tab\there"])
def test_a_token_no_client_can_send_is_refused_at_start(trained_app_run: Path, tmp_path: Path, token: str,
                                                        capsys: pytest.CaptureFixture[str],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    # Header values travel as ASCII: a UTF-8 client's 'Bearer pässwort' never matched, so every request was
    # a 401 with nothing said at start.
    line = run_user_error(["serve", str(trained_app_run), "--token", token], capsys)
    assert "--token" in line and "printable ASCII" in line and token not in line  # a secret is never echoed
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n", encoding="utf-8")
    assert "printable ASCII" in run_user_error(["serve", str(trained_app_run), "--token-file", str(token_file)], capsys)
    monkeypatch.setenv("UNFREEZE_TOKEN", token)
    assert "UNFREEZE_TOKEN" in run_user_error(["serve", str(trained_app_run)], capsys)


def test_a_missing_token_file_and_an_empty_environment_token_are_user_errors(
        trained_app_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert "is not a file" in run_user_error(["serve", str(trained_app_run), "--token-file",
                                              str(tmp_path / "none")], capsys)
    monkeypatch.setenv("UNFREEZE_TOKEN", " ")
    assert "UNFREEZE_TOKEN is set but empty" in run_user_error(["serve", str(trained_app_run)], capsys)


def test_the_top_level_help_says_what_each_command_does() -> None:
    """export was described as "check a run's export; with --onnx also write ONNX"."""
    help_text = " ".join(build_parser().format_help().split())
    assert "export write deployment files (--format onnx|torchscript|openvino) and a model card" in help_text
    assert "report write a run's report.html, or a page comparing two or more runs" in help_text
    assert "predict label images or folders with a trained model" in help_text
