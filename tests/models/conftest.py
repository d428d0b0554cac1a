"""Shared fixtures: a tiny model saved as a HF directory and as a GGUF file."""

import pytest

from apmpo.models import tiny_model


@pytest.fixture(scope="session")
def tiny_pair():
    return tiny_model(seed=11)


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory, tiny_pair):
    from tests.models.tiny_gguf import write_tiny_gguf

    pytest.importorskip("gguf")
    path = tmp_path_factory.mktemp("gguf") / "tiny.gguf"
    write_tiny_gguf(*tiny_pair, path)
    return path
