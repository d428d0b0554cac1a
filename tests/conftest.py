"""Fixtures for the whole test suite (each shared fixture is defined once, here or in tests/helpers.py)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    """One torch thread per test: fast on a shared machine and deterministic across runs."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def offline_hub(tmp_path, monkeypatch):
    """For tests of Hugging Face dataset references: the Hub offline, an empty datasets cache under tmp_path
    (yielded); nothing is read from or written to the user's cache and nothing is downloaded.

    ``datasets`` and ``huggingface_hub`` read ``HF_HUB_OFFLINE`` when they are imported, so besides the
    environment (for subprocesses) their module-level flags are patched.
    """
    # heavy (datasets): imported only by the tests that use this fixture
    import datasets
    import huggingface_hub.constants

    cache = tmp_path / "hf-datasets-cache"
    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.setenv(name, "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(cache))
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", cache)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    yield cache
