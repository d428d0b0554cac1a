"""A fixture for tests of Hugging Face dataset references: the Hub is offline and the caches are empty.

``datasets`` and ``huggingface_hub`` read ``HF_HUB_OFFLINE`` when they are imported, so
besides the environment (for subprocesses) their module-level flags are patched; the
datasets cache points into the test's temporary folder, so nothing is read from or
written to the user's cache and nothing is downloaded.
"""

from __future__ import annotations

import pytest


@pytest.fixture
def offline_hub(tmp_path, monkeypatch):
    """Offline Hub, empty datasets cache under tmp_path; yields the cache folder."""
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
