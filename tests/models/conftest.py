"""Fixtures for the models tests: isolated, empty weight caches and no network."""

from __future__ import annotations

from pathlib import Path

import pytest

import unfreeze.models.weights as weights_module


@pytest.fixture(autouse=True)
def offline_caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """Point the Hugging Face and torch hub caches at empty temporary folders and cut the network.

    Every models test thus sees the same world whatever the machine has cached, and no test waits
    on a socket timeout.
    """
    hf_cache, torch_home = tmp_path / "hf-hub", tmp_path / "torch-home"
    monkeypatch.setenv("HF_HUB_CACHE", str(hf_cache))
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    monkeypatch.delenv("HF_HOME", raising=False)
    monkeypatch.setattr(weights_module, "_network_available", lambda host, timeout=2.0: False)
    return {"hf": hf_cache, "torch": torch_home / "hub" / "checkpoints"}
