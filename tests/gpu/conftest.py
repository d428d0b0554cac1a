"""The `gpu` marker's tests: the training passes, generation and short runs on a CUDA device.

Every test here is marked ``gpu`` and takes the ``device`` fixture, which skips it
(saying why) when CUDA is missing. ``APMPO_GPU_TESTS_DEVICE`` names another device:
``cpu`` runs the same checks on CPU (``bash benchmarks/gpu_bench.sh --device cpu --shrink``
does, to check the script and the tests where no GPU is lent). To add checks to the
one-command GPU run (benchmarks/gpu_bench.sh runs ``pytest -m gpu tests/gpu`` before
the speed arms), add a ``test_*.py`` file here with ``pytestmark = pytest.mark.gpu`` and
the ``device`` fixture; keep the whole marker under ~2 minutes on an H100.
"""

from __future__ import annotations

import os

import pytest
import torch

from apmpo.models import tiny_model

DEVICE_ENV = "APMPO_GPU_TESTS_DEVICE"
"""Environment variable: the device the gpu tests run on (default "cuda")."""


@pytest.fixture(scope="session")
def device() -> torch.device:
    """The device under test: CUDA (skipped, with the reason, when there is none) or ``$APMPO_GPU_TESTS_DEVICE``."""
    name = os.environ.get(DEVICE_ENV, "cuda")
    if name.startswith("cuda") and not torch.cuda.is_available():
        pytest.skip(f"needs a CUDA device (torch.cuda.is_available() is False); {DEVICE_ENV}=cpu runs these "
                    "checks on CPU")
    return torch.device(name)


def tiny_text_model(device: torch.device, dtype: torch.dtype, seed: int = 0, **overrides):
    """The tiny random Llama (SDPA attention) on ``device`` in ``dtype``, dropout off, and its tokenizer."""
    model, tokenizer = tiny_model(seed=seed, **overrides)
    assert model.config._attn_implementation == "sdpa"
    return model.to(device=device, dtype=dtype), tokenizer
