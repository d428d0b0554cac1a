"""Atomic, resumable training checkpoints.

A checkpoint is a directory ``<run>/checkpoints/step-NNNNNN`` holding

- the model: ``save_pretrained`` output (config + safetensors + tokenizer), so a
  checkpoint is also a model directory that ``apmpo eval`` / ``from_pretrained`` load;
  for a LoRA run the PEFT adapter (``adapter_model.safetensors``) instead;
- ``trainer_state.pt``: optimizer and LR-scheduler state dicts and the RNG states
  (python, numpy, torch CPU and CUDA), loaded back with ``weights_only=True``;
- ``trainer_state.json``: step, data position, the adaptive controllers' history
  (p and eps_high per step, with mu_R and sigma_R), the config, for people and tools;
- ``COMPLETE``: written last.

The directory is assembled under a temporary name (``.step-NNNNNN.tmp-<pid>``), every
file in it is fsynced, and it is renamed into place (then the parent directory is
fsynced) by :func:`apmpo.io.atomic_directory`, so a crash mid-write leaves only a
temporary directory that ``latest_checkpoint`` never considers (it also requires the
``COMPLETE`` marker) and the next save removes. After a successful save only the newest
``keep_last`` checkpoints are kept.

A save that fails -- a full disk or an I/O error in any file, the fsyncs or the rename
(there is no separate "latest" pointer: the newest complete directory is the latest) --
removes its temporary directory and leaves every earlier checkpoint as it was (a
re-save of an existing step puts the old directory back). A storage failure is raised
as :class:`apmpo.io.StorageError` naming the checkpoint, the space it needs (the size of
the previous checkpoint, or of the model and optimizer tensors for a first one), the
space free, and the previous checkpoint to resume from.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from apmpo.io import atomic_directory
from apmpo.models.forward import unwrap_model

__all__ = [
    "CHECKPOINT_DIR",
    "COMPLETE_MARKER",
    "checkpoint_bytes",
    "latest_checkpoint",
    "list_checkpoints",
    "load_checkpoint",
    "load_model_weights",
    "rng_state",
    "save_checkpoint",
    "set_rng_state",
]

CHECKPOINT_DIR = "checkpoints"
COMPLETE_MARKER = "COMPLETE"
_NAME = re.compile(r"^step-(\d{6,})$")
_TMP = re.compile(r"^\.step-\d{6,}\.tmp-")


def rng_state() -> dict[str, Any]:
    """Every RNG the training loop draws from, in a form ``torch.load(weights_only=True)`` accepts."""
    version, internal, gauss = random.getstate()
    np_state: Any = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": [version, list(internal), gauss],
        "numpy": [
            np_state[0],
            torch.from_numpy(np_state[1].astype(np.int64)),
            int(np_state[2]),
            int(np_state[3]),
            float(np_state[4]),
        ],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the RNG states saved by :func:`rng_state`."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def list_checkpoints(run_dir: str | os.PathLike) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    root = Path(run_dir) / CHECKPOINT_DIR
    if not root.is_dir():
        return []
    found = []
    for child in root.iterdir():
        match = _NAME.match(child.name)
        if match and child.is_dir() and (child / COMPLETE_MARKER).is_file():
            found.append((int(match.group(1)), child))
    return [path for _, path in sorted(found)]


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    """The newest complete checkpoint of a run, or None."""
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def _is_peft(model: Any) -> bool:
    return callable(getattr(model, "get_base_model", None)) and hasattr(model, "peft_config")


@contextlib.contextmanager
def _quiet_transformers():
    """No "Writing model shards" progress bar in the middle of the training bar."""
    # heavy (transformers): imported on first use
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


def checkpoint_bytes(previous: Path | None, model: Any, optimizer: torch.optim.Optimizer | None) -> int:
    """About how many bytes a checkpoint takes: the size of ``previous``, else the model and optimizer tensors."""
    if previous is not None and previous.is_dir():
        return sum(f.stat().st_size for f in previous.rglob("*") if f.is_file())
    tensors = list(unwrap_model(model).state_dict().values())
    if optimizer is not None:
        tensors += [v for state in optimizer.state.values() for v in state.values() if torch.is_tensor(v)]
    unique = {(t.data_ptr(), t.numel(), t.dtype): t for t in tensors}  # tied weights are stored once
    return sum(t.numel() * t.element_size() for t in unique.values())


def save_checkpoint(
    run_dir: str | os.PathLike,
    step: int,
    *,
    model: Any,
    tokenizer: Any = None,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
    state: dict[str, Any] | None = None,
    keep_last: int = 2,
) -> Path:
    """Write checkpoint ``step`` atomically; returns its directory.

    ``state`` (JSON-serialisable: step, data position, controller history, config) goes
    to ``trainer_state.json``; optimizer, scheduler and RNG states to
    ``trainer_state.pt`` when an optimizer is given.
    """
    root = Path(run_dir) / CHECKPOINT_DIR
    root.mkdir(parents=True, exist_ok=True)
    for child in root.iterdir():  # leftovers of an interrupted save
        if _TMP.match(child.name):
            shutil.rmtree(child, ignore_errors=True)
    final = root / f"step-{step:06d}"
    previous = latest_checkpoint(run_dir)
    kept = (
        f"The previous checkpoint {previous} is intact: free some space and resume from it with --resume"
        if previous is not None
        else "There is no earlier checkpoint"
    )
    with atomic_directory(
        final,
        tmp_prefix=f".step-{step:06d}.tmp-",
        what="writing the checkpoint",
        needed=lambda: checkpoint_bytes(previous, model, optimizer),
        after=kept,
    ) as tmp:
        with _quiet_transformers():
            if _is_peft(model):
                model.save_pretrained(tmp, safe_serialization=True)
            else:
                unwrap_model(model).save_pretrained(tmp, safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        if optimizer is not None:
            blob = {"optimizer": optimizer.state_dict(), "rng": rng_state()}
            if scheduler is not None:
                blob["scheduler"] = scheduler.state_dict()
            torch.save(blob, tmp / "trainer_state.pt")
        (tmp / "trainer_state.json").write_text(json.dumps({"step": step, **(state or {})}, indent=1), encoding="utf-8")
        (tmp / COMPLETE_MARKER).write_text(f"step {step}\n", encoding="utf-8")
    for old in list_checkpoints(run_dir)[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def _read_safetensors(directory: Path, prefix: str) -> dict[str, torch.Tensor]:
    # heavy (safetensors, with transformers): imported on first use
    from safetensors.torch import load_file

    files = sorted(directory.glob(f"{prefix}*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{directory}: no {prefix}*.safetensors weights")
    weights: dict[str, torch.Tensor] = {}
    for file in files:
        weights.update(load_file(str(file)))
    return weights


def load_model_weights(model: Any, directory: str | os.PathLike) -> None:
    """Load a checkpoint's weights into ``model`` in place (full model or LoRA adapter).

    Missing keys are accepted only for parameters tied to a loaded one (a tied LM head).
    """
    directory = Path(directory)
    if _is_peft(model):
        # optional (peft): LoRA only
        from peft import set_peft_model_state_dict

        result = set_peft_model_state_dict(model, _read_safetensors(directory, "adapter_model"))
        unexpected = list(getattr(result, "unexpected_keys", []) or [])
        if unexpected:
            raise ValueError(f"{directory}: adapter weights do not match the model (unexpected: {unexpected[:5]})")
        return
    inner = unwrap_model(model)
    weights = _read_safetensors(directory, "model")
    params = dict(inner.named_parameters(remove_duplicate=False))
    result = inner.load_state_dict(weights, strict=False)
    if result.unexpected_keys:
        raise ValueError(f"{directory}: weights do not match the model (unexpected keys: {result.unexpected_keys[:5]})")
    loaded_ids = {id(params[k]) for k in weights if k in params}
    untied = [k for k in result.missing_keys if k not in params or id(params[k]) not in loaded_ids]
    untied = [k for k in untied if k in params]  # non-persistent buffers are never saved
    if untied:
        raise ValueError(f"{directory}: checkpoint lacks weights for {untied[:5]}")


def load_checkpoint(
    path: str | os.PathLike,
    *,
    model: Any,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
    restore_rng: bool = True,
) -> dict[str, Any]:
    """Restore model weights (and optimizer, scheduler, RNG) from a checkpoint; returns its JSON state."""
    path = Path(path)
    if not (path / COMPLETE_MARKER).is_file():
        raise ValueError(f"{path}: not a complete checkpoint (no {COMPLETE_MARKER} marker)")
    load_model_weights(model, path)
    state = json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
    blob_path = path / "trainer_state.pt"
    if optimizer is not None or restore_rng:
        if not blob_path.is_file():
            raise ValueError(
                f"{path}: saved without optimizer/RNG state (checkpoint.save_optimizer was false); cannot resume from it"
            )
        blob = torch.load(blob_path, map_location="cpu", weights_only=True)
        if optimizer is not None:
            optimizer.load_state_dict(blob["optimizer"])
        if scheduler is not None and "scheduler" in blob:
            scheduler.load_state_dict(blob["scheduler"])
        if restore_rng:
            set_rng_state(blob["rng"])
    return state
