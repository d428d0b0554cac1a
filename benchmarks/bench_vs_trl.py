"""Speed and memory of our trainer (GRPO, APMPO) against TRL's GRPOTrainer, side by side (issue 6).

One command runs everything and writes the results file:

    APMPO_CACHE=runs/apmcache .venv/bin/python benchmarks/bench_vs_trl.py \\
        --out benchmarks/results/cpu_$(date +%F).md

    .venv/bin/python benchmarks/bench_vs_trl.py --workload tiny --reps 1 --no-levers --no-micro \\
        --no-profile --out runs/quick.md                                   # a one-minute smoke run

What runs (nothing here changes the trainers; the harness only times and counts):

- the *same RL workload* -- model, the built-in arithmetic task's prompts in the same
  order (our ``PromptSampler`` order, handed to TRL as an unshuffled dataset), B prompts
  x G samples, max new tokens, temperature 1.0 / top-p 1 / top-k 0, mu = 1 (one update
  per rollout batch), micro-batch size, lr, grad clip 1.0, beta = 0, seed -- through
  arms: ``grpo`` and ``apmpo`` (our trainer, defaults), ``grpo_noskip`` (ours without
  the exact skipping of zero-advantage rows, i.e. the same forward/backward work as
  TRL), ``trl`` (TRL's GRPOTrainer, ``loss_type="grpo"``: the token mean per response,
  then the mean over responses, like our "grpo"), and for the SmolLM2 workload lever
  arms (our trainer with one switch flipped, see ``LEVER_ARMS``);
- alternating: rep 1 runs every arm once, then rep 2, ...; each run is a fresh
  subprocess, so its peak RSS (``ru_maxrss`` from ``os.wait4``) is its own;
- per step: generation tokens/s (completion tokens incl. EOS / seconds inside
  ``generate``), decode-slot use (completion tokens / row-steps the sampler computed: the
  rows of every forward pass inside ``generate``, finished rows included, or the
  sampler's own ``row_steps`` count when it reports one), training tokens/s (the rollout batch's real prompt + completion tokens /
  seconds of the training phase = step wall time minus sampling and scoring), wall time
  per step, step tokens/s (the same tokens / step wall time); the first ``warmup``
  steps of each run are left out; medians and min/max over the remaining steps of all
  reps, and each median as a ratio to TRL's;
- training FLOP/s: 6 x non-embedding parameters x tokens through the gradient forward
  (padding included: it is computed) + 6 x hidden x vocab x tokens through the LM head
  in that pass (ours: completion tokens; TRL on CPU: every position, see below), per
  second of the training phase, against the fp32 ``torch.matmul`` peak measured in the
  same run (square 2048 matrices, same thread count, best of several timings taken
  before, between and after the arms); attention score FLOPs are not counted (a few %
  at these lengths);
- levers without a switch in the trainer, measured on one stored SmolLM2 rollout batch
  (``micro``): shared prompt pass, padding trim + length sort, chunked LM head vs full logits, recomputed vs
  kept probabilities, entropy, the old-log-prob pass that on-policy reuse saves, shared
  prefill, static KV cache, and the policy loss alone (APMPO vs GRPO);
- a profile of one of our steps (torch.profiler, op level) and py-spy phase shares of
  a whole run of ours and of TRL's.

TRL settings and where they differ (also printed in the results file): TRL gets
``per_device_train_batch_size`` = our micro-batch, ``gradient_accumulation_steps`` =
B x G / micro (so one generation per optimizer step: ``steps_per_generation`` =
accumulation, no old-log-prob pass, as ours), ``num_iterations=1``, ``beta=0`` (no
reference model), ``scale_rewards="group"``, ``epsilon=0.2``, ``max_grad_norm=1``,
constant lr, ``disable_dropout=True``, its default optimizer (``adamw_torch_fused``;
ours: fused AdamW too), ``shuffle_dataset=False`` over our prompt order. Differences
that remain: TRL divides advantages by std + 1e-4 (ours 1e-6); TRL pads the whole
generation batch to one width and shuffles rows before splitting into micro-batches
(ours keeps each group in one micro-batch, orders by length and trims each
micro-batch); TRL's fused LM head (transformers backends without Triton, i.e. CPU)
scores every position of the sequence, prompt included, where ours scores completion
tokens only; ours runs each prompt once per group, in sampling (shared prefill) and in
the training passes (shared prompt pass, gradients through the KV cache); ours skips the gradient passes of zero-advantage rows when beta
= 0 (exact; arm ``grpo_noskip`` turns it off). Both sample with a clean generation
config, the dynamic KV cache and SDPA attention.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from apmpo.io import atomic_write_json, atomic_write_text
from apmpo.provenance import machine_info

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

# --------------------------------------------------------------------------- workloads and arms

WORKLOADS: dict[str, dict[str, Any]] = {
    "smollm2": {
        "model": "smollm2-135m-instruct", "dtype": "float32", "device": "cpu", "reward": "task",
        "task": {"digits": [1, 2], "ops": "+-"}, "prompts_per_step": 4, "group_size": 8, "max_new_tokens": 64,
        "micro_batch_size": 8, "steps": 3, "warmup": 1, "lr": 1e-5, "seed": 0, "train_size": 2000,
    },
    "tiny": {
        "model": "tiny", "dtype": "float32", "device": "cpu", "reward": "parity",
        "task": {"digits": 1}, "prompts_per_step": 8, "group_size": 8, "max_new_tokens": 32,
        "micro_batch_size": 16, "steps": 6, "warmup": 1, "lr": 1e-4, "seed": 0, "train_size": 2000,
    },
}
"""The CPU workloads. reward "task": the built-in task's verifier (exact match of the
integer); "parity": the fraction of even token ids in the completion (``parity_reward``,
for random models whose exact-match reward would be 0 everywhere)."""

CORE_ARMS: dict[str, dict[str, Any]] = {
    "grpo": {"kind": "ours", "algorithm": "grpo", "overrides": {}},
    "apmpo": {"kind": "ours", "algorithm": "apmpo", "overrides": {}},
    "grpo_noskip": {"kind": "ours", "algorithm": "grpo", "overrides": {"optim": {"skip_zero_advantage": False}}},
    "grpo_ckpt": {"kind": "ours", "algorithm": "grpo", "overrides": {"model": {"gradient_checkpointing": True}}},
    "grpo_hf": {"kind": "ours", "algorithm": "grpo", "overrides": {"rollout": {"engine": "hf"}}},
    "grpo_nolean": {"kind": "ours", "algorithm": "grpo", "overrides": {"model": {"lean_layers": False}}},
    "grpo_mmap": {"kind": "ours", "algorithm": "grpo", "env": {"MALLOC_MMAP_THRESHOLD_": "262144"}, "overrides": {}},
    "trl": {"kind": "trl", "algorithm": "grpo", "overrides": {}},
}
"""Arms of the comparison (ours with its defaults -- the fast sampling engine --, ours doing TRL's forward/backward
work (the every-row arm), ours with activation checkpointing as TRL's GRPOConfig has by default, ours sampling with
transformers generate (rollout.engine=hf), ours without the lean MLP/RMSNorm backward (model.lean_layers=false), ours
with glibc's mmap threshold fixed at 256 KiB (freed blocks go back to the system at once, so the RSS is close to the
memory in use, at the cost of page faults), TRL)."""

_NOSKIP = {"skip_zero_advantage": False}
LEVER_ARMS: dict[str, dict[str, Any]] = {
    "noskip_beta": {"kind": "ours", "algorithm": "grpo",
                    "overrides": {"optim": _NOSKIP, "algorithm": {"beta": 0.001}}},
    "noskip_threads": {"kind": "ours", "algorithm": "grpo", "threads": "other", "overrides": {"optim": _NOSKIP}},
    "noskip_mmap": {"kind": "ours", "algorithm": "grpo", "env": {"MALLOC_MMAP_THRESHOLD_": "131072"},
                    "overrides": {"optim": _NOSKIP}},
    "noskip_noshare": {"kind": "ours", "algorithm": "grpo",
                       "overrides": {"optim": {**_NOSKIP, "share_prompt_forward": False}}},
}
"""Levers with a switch (config or environment), each against ``grpo_noskip`` (the full gradient work).
``threads: "other"`` means 2 when the benchmark runs with --threads 1, else 1."""

LEVER_DOC = {
    "grpo": "optim.skip_zero_advantage=true (default) vs false",
    "noskip_beta": "algorithm.beta=0.001 (reference model + reference pass) vs beta=0 (none)",
    "noskip_threads": "model.num_threads: the other of 1 / 2 than the base run's --threads",
    "noskip_mmap": "env MALLOC_MMAP_THRESHOLD_=131072 (glibc returns freed large blocks at once) vs glibc default",
    "noskip_noshare": "optim.share_prompt_forward=false (every row runs its own prompt) vs true",
}


def parity_reward(completions, completion_ids=None, **_):
    """Fraction of even token ids in each completion (in [0, 1]; varies under a random model)."""
    if completion_ids is None:
        raise ValueError("parity_reward needs completion_ids (both trainers pass them)")
    return [sum(1 for t in ids if t % 2 == 0) / len(ids) if len(ids) else 0.0 for ids in completion_ids]


# --------------------------------------------------------------------------- small helpers


def _rss_gb() -> float:
    """Current resident set size (VmRSS) in GB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024**2
    return float("nan")


def _maxrss_gb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


@functools.cache
def _mallinfo2() -> Any:
    """glibc's ``mallinfo2`` with its result type (looked up once), or None without glibc >= 2.33."""
    import ctypes

    class MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in
                    ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                     "keepcost")]

    try:
        mallinfo2 = ctypes.CDLL("libc.so.6").mallinfo2
    except (OSError, AttributeError):
        return None
    mallinfo2.restype = MallInfo2
    return mallinfo2


def _heap_gb() -> dict[str, float] | None:
    """glibc's malloc statistics in GB: heap in use, heap free (kept by the allocator), mmapped; None without glibc."""
    mallinfo2 = _mallinfo2()
    if mallinfo2 is None:
        return None
    info = mallinfo2()
    return {"heap_used_gb": info.uordblks / 1024**3, "heap_free_gb": info.fordblks / 1024**3,
            "mmapped_gb": info.hblkhd / 1024**3}


class RssSampler:
    """Samples this process's RSS every ``interval`` seconds in a daemon thread (for per-phase peaks), and glibc's
    heap statistics at the highest sample (``at_peak``: how much of the peak the allocator held as free memory)."""

    def __init__(self, interval: float = 0.05):
        import threading

        self.samples: list[tuple[float, float]] = []
        self.at_peak: dict[str, float] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval,), daemon=True)
        self._thread.start()

    def _run(self, interval: float) -> None:
        peak = 0.0
        while not self._stop.is_set():
            rss = _rss_gb()
            self.samples.append((time.perf_counter(), rss))
            if rss > peak:
                peak, heap = rss, _heap_gb()
                self.at_peak = {"rss_gb": rss, **heap} if heap is not None else None
            self._stop.wait(interval)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def window_max(self, t0: float | None, t1: float | None) -> float | None:
        if t0 is None or t1 is None:
            return None
        values = [r for t, r in self.samples if t0 <= t <= t1]
        return max(values) if values else None

    def annotate(self, steps: list[dict]) -> None:
        """Per step: RSS at its start, peak while sampling/scoring, peak while training."""
        for rec in steps:
            t0, t1, t2 = rec.pop("_t_start", None), rec.pop("_t_rollout_end", None), rec.pop("_t_end", None)
            rec["rss_step_start_gb"] = self.window_max(t0, t0 + 0.2) if t0 is not None else None
            rec["rss_peak_rollout_gb"] = self.window_max(t0, t1)
            rec["rss_peak_train_gb"] = self.window_max(t1, t2)


def _setup_child(spec: dict) -> None:
    """Thread count, offline mode and quiet logs for a child process."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        os.environ.setdefault(var, "1")
    import torch

    if spec.get("threads"):
        torch.set_num_threads(int(spec["threads"]))
    import transformers

    transformers.logging.set_verbosity_error()


def flop_shape(model) -> dict[str, int]:
    """Non-embedding parameter count (matmul work per token), hidden size and vocabulary size."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    emb = inner.get_input_embeddings().weight
    head = inner.get_output_embeddings().weight
    unique = {id(p): p.numel() for p in inner.parameters()}
    total = sum(unique.values())
    tied = head.data_ptr() == emb.data_ptr()
    body = total - emb.numel() - (0 if tied else head.numel())
    return {"params": total, "body_params": body, "hidden": int(head.shape[1]), "vocab": int(head.shape[0]),
            "tied": bool(tied)}


class RowSteps:
    """Rows whose next-token logits ``model.generate`` computes, counted per forward pass inside it.

    Every forward pass of ``generate`` computes the next-token logits of every row of its
    batch, finished rows included; decode-slot use is completion tokens / their sum.
    ``take()`` returns and resets the rows of each pass, when each pass started and the
    (start, end) time of each ``generate`` call.
    """

    def __init__(self, model):
        self.step_rows: list[int] = []
        self.starts: list[float] = []
        self.spans: list[tuple[float, float]] = []
        self._active = False
        original = model.generate

        def generate(*args, **kwargs):
            self._active, t0 = True, time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self._active = False
                self.spans.append((t0, time.perf_counter()))

        model.generate = generate
        model.register_forward_pre_hook(self._count, with_kwargs=True)

    def _count(self, module, args, kwargs):
        if self._active:
            inputs = kwargs.get("input_ids", args[0] if args else None)
            inputs = inputs if inputs is not None else kwargs["inputs_embeds"]
            self.step_rows.append(int(inputs.shape[0]))
            self.starts.append(time.perf_counter())

    def take(self) -> dict[str, Any]:
        out = {"step_rows": self.step_rows, "starts": self.starts, "spans": self.spans}
        self.step_rows, self.starts, self.spans = [], [], []
        return out


def _step_flops(shape: dict[str, int], body_tokens: float, head_tokens: float) -> float:
    return 6.0 * shape["body_params"] * body_tokens + 6.0 * shape["hidden"] * shape["vocab"] * head_tokens


def _device_sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def _peak_memory_gb(device: str) -> float | None:
    if device.startswith("cuda"):
        import torch

        return torch.cuda.max_memory_allocated() / 1024**3
    return None


# --------------------------------------------------------------------------- data shared by both trainers


def _load_data(spec: dict, tokenizer):
    from apmpo.trainer.config import DataConfig
    from apmpo.trainer.setup import load_data

    return load_data(DataConfig(train="arithmetic", task=dict(spec["task"]), train_size=spec["train_size"], eval_size=8),
                     tokenizer, spec["seed"])


def _prompt_order(spec: dict, size: int) -> list[int]:
    """The example indices our trainer visits, step after step (``PromptSampler``)."""
    from apmpo.trainer.setup import PromptSampler

    return PromptSampler(size, spec["seed"], True).take(spec["prompts_per_step"] * spec["steps"])


def _model_reference(spec: dict) -> str:
    return spec.get("model_path") or spec["model"]


def _sampling(spec: dict, engine: str = "fast"):
    """The workload's sampling settings (temperature 1, no top-p / top-k) with ``engine``."""
    from apmpo.sampling.settings import Sampling

    return Sampling(max_new_tokens=spec["max_new_tokens"], temperature=1.0, top_p=1.0, top_k=0, engine=engine)


# --------------------------------------------------------------------------- child: our trainer


def _our_config(spec: dict, arm: dict, out_dir: str):
    from apmpo.trainer.config import config_from_dict

    data = {
        "seed": spec["seed"], "steps": spec["steps"],
        "model": {"name": _model_reference(spec), "dtype": spec["dtype"], "device": spec["device"],
                  "num_threads": int(arm.get("threads", spec.get("threads") or 0))},
        "data": {"train": "arithmetic", "task": dict(spec["task"]), "train_size": spec["train_size"], "eval_size": 8},
        "rollout": {"prompts_per_step": spec["prompts_per_step"], "group_size": spec["group_size"],
                    "max_new_tokens": spec["max_new_tokens"], "temperature": 1.0, "top_p": 1.0, "top_k": 0},
        # one update per rollout batch, as TRL's default schedule: deliberate (speed, not the objective)
        "algorithm": {"name": arm["algorithm"], "beta": 0.0, "epochs": 1, "mini_batches": 1, "allow_single_update": True},
        "optim": {"lr": spec["lr"], "micro_batch_size": spec["micro_batch_size"], "max_grad_norm": 1.0},
        "logging": {"output_dir": out_dir, "run_name": "bench", "tensorboard": False, "progress": "none",
                    "sample_every": 0, "plot": False},
        "checkpoint": {"save_final": False},
        "eval": {"at_start": False, "at_end": False, "every": 0},
    }
    if spec["reward"] == "parity":
        data["reward"] = {"functions": {"parity": 1.0}}
    for section, values in arm.get("overrides", {}).items():
        data.setdefault(section, {}).update(values)
    return config_from_dict(data)


def run_ours(spec: dict, arm: dict, profile_step: int | None = None) -> dict:
    """Train ``spec["steps"]`` steps with our trainer; per-step timings and token/FLOP counts."""
    import torch

    from apmpo.trainer import loop, step

    steps: list[dict[str, Any]] = []
    state: dict[str, Any] = {"rss_before_first_step": None, "shape": None, "profiler": None, "profile": None}
    original_clp, original_sample = step.completion_log_probs, loop.sample

    def counting_log_probs(model, prompt_ids, prompt_mask, completion_ids, completion_mask, **kwargs):
        out = original_clp(model, prompt_ids, prompt_mask, completion_ids, completion_mask, **kwargs)
        if state["shape"] is None:
            state["shape"] = flop_shape(model)
        rec = steps[-1]
        key = "grad" if torch.is_grad_enabled() else "nograd"
        rec[f"body_tokens_{key}"] += out.body_tokens  # B x (P + T), or U x P + B x T with the shared prompt pass
        rec[f"head_tokens_{key}"] += int(completion_mask.sum())
        rec["passes"] += 1
        return out

    def timed_sample_batch(*args, **kwargs):
        if state["rss_before_first_step"] is None:
            state["rss_before_first_step"] = _rss_gb()
        if state["profiler"] is not None:  # the profiled step ended
            state["profiler"].__exit__(None, None, None)
            state["profile"] = _profile_table(state["profiler"])
            state["profiler"] = None
        now = time.perf_counter()
        if steps:
            steps[-1]["_t_end"] = now
        steps.append({"body_tokens_grad": 0, "head_tokens_grad": 0, "body_tokens_nograd": 0, "head_tokens_nograd": 0,
                      "passes": 0, "_t_start": now})
        if profile_step is not None and len(steps) == profile_step:
            state["profiler"] = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU])
            state["profiler"].__enter__()
        if state.get("row_steps") is None:
            run = args[0] if args else kwargs["run"]
            state["row_steps"] = RowSteps(run.model)
        batch, sampled = original_sample(*args, **kwargs)
        steps[-1]["_t_rollout_end"] = time.perf_counter()
        passes = state["row_steps"].take()["step_rows"]  # generate's forward passes (engine=hf; none for fast)
        if batch is not None:
            ro = batch.rollout
            steps[-1].update(batch_tokens=int(ro.prompt_mask.sum() + ro.completion_mask.sum()),
                             completion_tokens=int(ro.completion_mask.sum()), rows=len(ro),
                             gen_width=int(ro.completion_ids.shape[1]), row_steps=ro.meta.get("row_steps", sum(passes)),
                             truncated=int(ro.truncated.sum()), engine=ro.meta.get("engine"),
                             gen_passes=len(passes), gen_pass_rows=sum(passes),
                             decode_steps=ro.meta.get("decode_steps"), decode_s=ro.meta.get("decode_seconds"),
                             decode_row_steps=ro.meta.get("decode_row_steps"),
                             prefill_s=ro.meta.get("prefill_seconds"), weight_s=ro.meta.get("weight_seconds"))
        return batch, sampled

    step.completion_log_probs, loop.sample = counting_log_probs, timed_sample_batch
    rewards = {"parity": parity_reward} if spec["reward"] == "parity" else None
    rss = RssSampler()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            result = loop.train(_our_config(spec, arm, tmp), reward_functions=rewards)
        if steps:
            steps[-1]["_t_end"] = time.perf_counter()
    finally:
        step.completion_log_probs, loop.sample = original_clp, original_sample
        rss.stop()
        rss.annotate(steps)
        if state["profiler"] is not None:
            state["profiler"].__exit__(None, None, None)
            state["profile"] = _profile_table(state["profiler"])
    for rec, h in zip(steps, result.history):
        N = rec.get("rows", 0)
        rec.update(step_s=h["step_seconds"], rollout_s=h["rollout_seconds"], gen_s=h["generation_seconds"],
                   gen_tokens=h["generated_tokens"], train_s=h["train_seconds"],
                   zero_adv_rows=round(h.get("adv_zero_frac", 0.0) * N), trained_rows=h.get("trained_rows", N),
                   peak_device_gb=h.get("peak_gpu_gb"))
    return {"steps": steps, "shape": state["shape"], "rss_before_first_step_gb": state["rss_before_first_step"],
            "profile": state["profile"], "heap_at_peak": rss.at_peak}


def _profile_table(prof, top: int = 20) -> list[dict[str, Any]]:
    rows = []
    for ev in sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)[:top]:
        rows.append({"name": ev.key, "self_s": ev.self_cpu_time_total / 1e6, "total_s": ev.cpu_time_total / 1e6,
                     "calls": ev.count})
    total = sum(ev.self_cpu_time_total for ev in prof.key_averages()) / 1e6
    return [{"name": "(all ops, self time)", "self_s": total, "total_s": total, "calls": 0}, *rows]


# --------------------------------------------------------------------------- child: TRL


def trl_config(spec: dict, output_dir: str):
    """TRL's ``GRPOConfig`` for the workload ``spec`` (the settings listed in the module docstring)."""
    from trl import GRPOConfig

    N, micro = spec["prompts_per_step"] * spec["group_size"], spec["micro_batch_size"]
    if N % micro:
        raise ValueError(f"micro_batch_size {micro} must divide B x G = {N}")
    return GRPOConfig(
        output_dir=output_dir, per_device_train_batch_size=micro, gradient_accumulation_steps=N // micro,
        num_generations=spec["group_size"], max_completion_length=spec["max_new_tokens"],
        temperature=1.0, top_p=1.0, top_k=0, beta=0.0, num_iterations=1, epsilon=0.2, loss_type="grpo",
        scale_rewards="group", mask_truncated_completions=False, learning_rate=spec["lr"],
        lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0, max_grad_norm=1.0,
        max_steps=spec["steps"], logging_steps=1, report_to="none", save_strategy="no", seed=spec["seed"],
        shuffle_dataset=False, disable_dropout=True, log_completions=False, use_cpu=not spec["device"].startswith("cuda"),
        bf16=spec["dtype"] in ("bfloat16", "bf16"), dataloader_num_workers=0, disable_tqdm=True,
    )


def trl_inputs(spec: dict, tokenizer):
    """(dataset, reward, same_prompt): our prompts in our order as TRL conversations, and the reward."""
    from datasets import Dataset

    from apmpo.data.prompts import render_prompt

    data = _load_data(spec, tokenizer)
    order = _prompt_order(spec, len(data.train))
    rows = [data.train[i] for i in order]
    messages = [render_prompt(r, tokenizer, template=data.template, return_messages=True) for r in rows]
    same_prompt = tokenizer.apply_chat_template(messages[0], add_generation_prompt=True, tokenize=False) \
        == data.train_prompts[order[0]]
    if not same_prompt:
        raise RuntimeError("TRL would see another prompt text than our trainer; the comparison is not like for like")
    dataset = Dataset.from_dict({"prompt": messages, "answer": [r["answer"] for r in rows]})
    if spec["reward"] == "parity":
        return dataset, parity_reward, same_prompt
    from apmpo.rewards import get_reward

    return dataset, get_reward(data.default_reward), same_prompt


def run_trl(spec: dict, arm: dict) -> dict:
    """Train ``spec["steps"]`` steps with TRL's GRPOTrainer on the same workload."""
    import torch
    from transformers import TrainerCallback
    from trl import GRPOTrainer

    from apmpo.models import load_model_and_tokenizer

    torch.manual_seed(spec["seed"])
    model, tokenizer = load_model_and_tokenizer(_model_reference(spec), dtype=spec["dtype"], device=spec["device"],
                                                seed=spec["seed"])
    dataset, reward, same_prompt = trl_inputs(spec, tokenizer)
    steps: list[dict[str, Any]] = []
    marks = {"last": None, "rss": None}
    try:
        from trl.trainer.utils import _use_triton
    except ImportError:  # older/newer TRL: CPU scores every position, Triton devices only the labelled ones
        def _use_triton(device):
            return device.type == "cuda"

    class Timing(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            marks["rss"] = _rss_gb()
            marks["last"] = time.perf_counter()

        def on_step_begin(self, args, state, control, **kwargs):
            steps.append({"body_tokens_grad": 0, "head_tokens_grad": 0, "body_tokens_nograd": 0,
                          "head_tokens_nograd": 0, "passes": 0, "gen_s": 0.0, "gen_tokens": 0, "rollout_s": 0.0,
                          "_t_start": time.perf_counter()})

        def on_step_end(self, args, state, control, **kwargs):
            _device_sync(spec["device"])
            now = time.perf_counter()
            rec = steps[-1]
            rec["step_s"] = now - marks["last"]
            rec["train_s"] = rec["step_s"] - rec["rollout_s"]
            rec["peak_device_gb"] = _peak_memory_gb(spec["device"])
            rec["_t_end"] = now
            marks["last"] = now

    class TimedGRPOTrainer(GRPOTrainer):
        """GRPOTrainer with timers and counters around generation, scoring and the log-prob passes."""

        def _generate_single_turn(self, prompt_ids, *args, **kwargs):
            if marks.get("row_steps") is None:
                marks["row_steps"] = RowSteps(self.model)
            t0 = time.perf_counter()
            out = super()._generate_single_turn(prompt_ids, *args, **kwargs)
            _device_sync(spec["device"])
            steps[-1]["gen_s"] += time.perf_counter() - t0
            steps[-1]["gen_tokens"] += sum(len(ids) for ids in out[0])
            passes = marks["row_steps"].take()["step_rows"]
            steps[-1]["row_steps"] = steps[-1].get("row_steps", 0) + sum(passes)
            steps[-1]["gen_passes"] = steps[-1].get("gen_passes", 0) + len(passes)
            steps[-1]["gen_pass_rows"] = steps[-1].get("gen_pass_rows", 0) + sum(passes)
            return out

        def _generate_and_score_completions(self, inputs):
            t0 = time.perf_counter()
            out = super()._generate_and_score_completions(inputs)
            _device_sync(spec["device"])
            rec = steps[-1]
            rec["rollout_s"] += time.perf_counter() - t0
            rec["_t_rollout_end"] = time.perf_counter()
            rec["batch_tokens"] = int(out["prompt_mask"].sum() + out["completion_mask"].sum())
            rec["completion_tokens"] = int(out["completion_mask"].sum())
            rec["rows"] = int(out["completion_ids"].shape[0])
            rec["gen_width"] = int(out["completion_ids"].shape[1])
            rec["zero_adv_rows"] = int((out["advantages"] == 0).sum())
            rec["trained_rows"] = rec["rows"]
            return out

        def _get_per_token_logps_and_entropies(self, model, input_ids, attention_mask, logits_to_keep, *args, **kwargs):
            rec = steps[-1]
            key = "grad" if torch.is_grad_enabled() else "nograd"
            rec[f"body_tokens_{key}"] += input_ids.numel()
            if _use_triton(input_ids.device):  # only the labelled (completion) positions
                rec[f"head_tokens_{key}"] += int(attention_mask[:, -logits_to_keep:].sum())
            else:  # every position but the last
                rec[f"head_tokens_{key}"] += input_ids.shape[0] * (input_ids.shape[1] - 1)
            rec["passes"] += 1
            return super()._get_per_token_logps_and_entropies(model, input_ids, attention_mask, logits_to_keep,
                                                              *args, **kwargs)

    with tempfile.TemporaryDirectory() as tmp:
        args = trl_config(spec, tmp)
        trainer = TimedGRPOTrainer(model=model, reward_funcs=reward, args=args, train_dataset=dataset,
                                   processing_class=tokenizer, callbacks=[Timing()])
        shape = flop_shape(trainer.model)
        rss = RssSampler()
        try:
            trainer.train()
        finally:
            rss.stop()
            rss.annotate(steps)
    return {"steps": steps, "shape": shape, "rss_before_first_step_gb": marks["rss"], "same_prompt_text": same_prompt,
            "heap_at_peak": rss.at_peak,
            "trl_settings": {k: getattr(args, k) for k in (
                "per_device_train_batch_size", "gradient_accumulation_steps", "generation_batch_size",
                "gradient_checkpointing",
                "steps_per_generation", "num_generations", "max_completion_length", "loss_type", "scale_rewards",
                "beta", "num_iterations", "optim", "temperature", "top_p", "top_k")}}


# --------------------------------------------------------------------------- child: matmul peak


def run_peak(spec: dict) -> dict:
    """Best achieved FLOP/s of a large square matmul in the benchmark dtype (fp32 on CPU)."""
    import torch

    device, n = spec["device"], int(spec.get("peak_n", 2048))
    dtype = torch.bfloat16 if spec["dtype"] in ("bfloat16", "bf16") else torch.float32
    a = torch.randn(n, n, dtype=dtype, device=device)
    b = torch.randn(n, n, dtype=dtype, device=device)
    for _ in range(2):
        torch.matmul(a, b)
    _device_sync(device)
    rates = []
    for _ in range(int(spec.get("peak_reps", 8))):
        t0 = time.perf_counter()
        torch.matmul(a, b)
        _device_sync(device)
        rates.append(2.0 * n**3 / (time.perf_counter() - t0))
    del a, b
    x = torch.ones(int(spec.get("bandwidth_mb", 512)) * 2**20 // 4, dtype=torch.float32, device=device)  # far above cache
    x.sum()
    _device_sync(device)
    reads = []
    for _ in range(int(spec.get("peak_reps", 8))):
        t0 = time.perf_counter()
        x.sum()
        _device_sync(device)
        reads.append(x.numel() * 4 / (time.perf_counter() - t0))
    return {"n": n, "dtype": str(dtype), "threads": torch.get_num_threads(), "best": max(rates),
            "median": statistics.median(rates), "bandwidth_best": max(reads), "bandwidth_median": statistics.median(reads)}


# --------------------------------------------------------------------------- child: lever microbenchmarks


def _micro_batch_file(spec: dict, path: str) -> dict:
    """Sample one rollout batch (B x G) with our rollout code and store it for the micro variants."""
    import torch

    from apmpo.models import load_model_and_tokenizer
    from apmpo.sampling.rollout import encode_prompts, generate_rollouts

    torch.manual_seed(spec["seed"])
    model, tokenizer = load_model_and_tokenizer(_model_reference(spec), dtype=spec["dtype"], device=spec["device"])
    data = _load_data(spec, tokenizer)
    prompts = [data.train_prompts[i] for i in _prompt_order(spec, len(data.train))[: spec["prompts_per_step"]]]
    batch = encode_prompts(tokenizer, prompts, add_special_tokens=data.add_special_tokens, device=spec["device"])
    ro = generate_rollouts(model, tokenizer, batch, _sampling(spec), num_samples=spec["group_size"])
    torch.save({"prompts": prompts, "prompt_ids": ro.prompt_ids, "prompt_mask": ro.prompt_mask,
                "completion_ids": ro.completion_ids, "completion_mask": ro.completion_mask,
                "truncated": ro.truncated, "prompt_index": ro.prompt_index}, path)
    return {"rows": len(ro), "completion_tokens": int(ro.completion_mask.sum()),
            "prompt_tokens": int(ro.prompt_mask.sum()), "width": [ro.prompt_ids.shape[1], ro.completion_ids.shape[1]]}


def run_micro(spec: dict, variants: list[str], batch_path: str, reps: int = 3) -> dict:
    """Time (and, for a single variant, the peak-RSS increase of) lever variants on a stored batch."""
    import torch

    from apmpo import policy_loss
    from apmpo.models import load_model_and_tokenizer
    from apmpo.models.forward import position_ids_from_mask
    from apmpo.sampling.rollout import Rollout, encode_prompts, generate_rollouts
    from apmpo.trainer.logprobs import completion_log_probs
    from apmpo.trainer.step import micro_batches

    model, tokenizer = load_model_and_tokenizer(_model_reference(spec), dtype=spec["dtype"], device=spec["device"])
    stored = torch.load(batch_path)
    ro = Rollout(stored["prompt_ids"], stored["prompt_mask"], stored["completion_ids"], stored["completion_mask"],
                 stored["truncated"], [""] * len(stored["truncated"]), stored["prompt_index"])
    N, micro = len(ro), spec["micro_batch_size"]
    rng = torch.Generator().manual_seed(0)
    advantages = torch.randn(N, generator=rng)                                          # [N] all non-zero
    normalizer = float(N)
    rows = torch.arange(N)

    def grad_pass(chunks, **clp_kwargs):
        for idx, mb in chunks:
            out = completion_log_probs(model, mb.prompt_ids, mb.prompt_mask, mb.completion_ids, mb.completion_mask,
                                       **clp_kwargs)
            loss, _ = policy_loss("grpo", out.log_probs, out.log_probs.detach(), advantages[idx], mb.completion_mask,
                                  normalizer=normalizer)
            loss.backward()
        model.zero_grad(set_to_none=True)

    def unsorted_untrimmed():
        for start in range(0, N, micro):
            idx = rows[start : start + micro]
            yield idx, ro.select(idx)

    def full_logits_pass():
        for idx, mb in micro_batches(ro, rows, micro):
            P = mb.prompt_ids.shape[1]
            ids = torch.cat([mb.prompt_ids, mb.completion_ids], 1)                      # [n, P+T]
            mask = torch.cat([mb.prompt_mask.long(), mb.completion_mask.long()], 1)
            logits = model(input_ids=ids, attention_mask=mask, position_ids=position_ids_from_mask(mask)).logits
            logp = logits[:, P - 1 : -1].float().log_softmax(-1)                        # [n, T, V] fp32
            lp = logp.gather(-1, mb.completion_ids[..., None])[..., 0] * mb.completion_mask
            loss, _ = policy_loss("grpo", lp, lp.detach(), advantages[idx], mb.completion_mask, normalizer=normalizer)
            loss.backward()
        model.zero_grad(set_to_none=True)

    def old_logprob_pass():
        with torch.no_grad():
            for _, mb in micro_batches(ro, rows, micro, share_prompts=True):
                completion_log_probs(model, mb.prompt_ids, mb.prompt_mask, mb.completion_ids, mb.completion_mask,
                                     chunk_size=1024, share_prompt=True)

    prompts = encode_prompts(tokenizer, stored["prompts"], add_special_tokens=False)

    def gen(engine: str, share: bool = True):
        torch.manual_seed(1)
        generate_rollouts(model, tokenizer, prompts, _sampling(spec, engine), num_samples=spec["group_size"],
                          share_prefill=share)

    def gen_static():
        from transformers import GenerationConfig

        from apmpo.sampling.rollout import eos_token_ids

        torch.manual_seed(1)
        eos = eos_token_ids(model, tokenizer)
        cfg = GenerationConfig(max_new_tokens=spec["max_new_tokens"], do_sample=True, temperature=1.0, top_p=1.0,
                               top_k=0, eos_token_id=eos, pad_token_id=tokenizer.pad_token_id, use_cache=True,
                               cache_implementation="static")
        ids = prompts.input_ids.repeat_interleave(spec["group_size"], 0)
        mask = prompts.attention_mask.repeat_interleave(spec["group_size"], 0)
        with torch.no_grad():
            model.generate(input_ids=ids, attention_mask=mask, generation_config=cfg)

    T = ro.completion_ids.shape[1]
    lp_shape = torch.randn(N, T, generator=rng) * 0.1 - 1.0
    loss_mask = ro.completion_mask

    def loss_only(name: str):
        def run():
            hp = {"reward_mean": 0.4, "reward_std": 0.45} if name == "apmpo" else {}
            for start in range(0, N, micro):
                lp = lp_shape[start : start + micro].clone().requires_grad_(True)
                loss, _ = policy_loss(name, lp, lp.detach(), advantages[start : start + micro],
                                      loss_mask[start : start + micro], normalizer=normalizer, **hp)
                loss.backward()
        return run

    params = [p for p in model.parameters() if p.requires_grad]
    fake_grads: list = []
    optimizers: dict = {}

    def optimizer_step(kind: str):
        def run():
            if not fake_grads:
                fake_grads.extend(torch.randn_like(p) * 1e-3 for p in params)
            if kind not in optimizers:
                optimizers[kind] = torch.optim.AdamW(params, lr=1e-7, **{kind: True})
            for p, g in zip(params, fake_grads):
                p.grad = g
            optimizers[kind].step()
            for p in params:
                p.grad = None
        return run

    table = {
        "trainer_pass": lambda: grad_pass(micro_batches(ro, rows, micro, share_prompts=True), chunk_size=1024,
                                          with_entropy=True, share_prompt=True),
        "no_share_prompt": lambda: grad_pass(micro_batches(ro, rows, micro), chunk_size=1024, with_entropy=True),
        "unsorted_untrimmed": lambda: grad_pass(unsorted_untrimmed(), chunk_size=1024, with_entropy=True),
        "full_logits": full_logits_pass,
        "keep_probs": lambda: grad_pass(micro_batches(ro, rows, micro), chunk_size=1024, with_entropy=True,
                                        recompute_logits=False),
        "no_entropy": lambda: grad_pass(micro_batches(ro, rows, micro), chunk_size=1024, with_entropy=False),
        "one_chunk": lambda: grad_pass(micro_batches(ro, rows, micro), chunk_size=1 << 20, with_entropy=True),
        "old_logprob_pass": old_logprob_pass,
        "gen_engine": lambda: gen("fast"),
        "gen_share_prefill": lambda: gen("hf", True),
        "gen_plain": lambda: gen("hf", False),
        "gen_static_cache": gen_static,
        "opt_foreach": optimizer_step("foreach"),
        "opt_fused": optimizer_step("fused"),
        "loss_grpo": loss_only("grpo"),
        "loss_apmpo": loss_only("apmpo"),
    }
    unknown = sorted(set(variants) - set(table))
    if unknown:
        raise ValueError(f"unknown micro variant(s) {unknown}; known: {sorted(table)}")
    model.train()
    rss0 = _rss_gb()
    results: dict[str, Any] = {}
    for name in variants:  # warm every variant once
        table[name]()
    for _ in range(reps):  # then alternate
        for name in variants:
            t0 = time.perf_counter()
            table[name]()
            _device_sync(spec["device"])
            results.setdefault(name, []).append(time.perf_counter() - t0)
    out = {name: {"median_s": statistics.median(ts), "min_s": min(ts), "max_s": max(ts)} for name, ts in results.items()}
    if len(variants) == 1:
        out[variants[0]]["peak_rss_increase_gb"] = _maxrss_gb() - rss0
    return {"variants": out, "rows": N, "completion_tokens": int(ro.completion_mask.sum())}


# --------------------------------------------------------------------------- child entry point


def child_main(spec_path: str, out_path: str) -> None:
    with open(spec_path) as f:
        job = json.load(f)
    spec = job["spec"]
    _setup_child({**spec, "threads": job.get("arm", {}).get("threads", spec.get("threads"))})
    t0 = time.perf_counter()
    mode = job["mode"]
    if mode == "arm":
        arm = job["arm"]
        result = (run_trl if arm["kind"] == "trl" else run_ours)(spec, arm)
    elif mode == "profile":
        result = run_ours(spec, job["arm"], profile_step=job.get("profile_step", 2))
    elif mode == "peak":
        result = run_peak(spec)
    elif mode == "micro_batch":
        result = _micro_batch_file(spec, job["batch_path"])
    elif mode == "micro":
        result = run_micro(spec, job["variants"], job["batch_path"], job.get("reps", 3))
    else:
        raise ValueError(f"unknown child mode {mode!r}")
    import torch

    result.update(wall_s=time.perf_counter() - t0, child_maxrss_gb=_maxrss_gb(), threads=torch.get_num_threads())
    atomic_write_json(out_path, result, indent=1, default=str)


# --------------------------------------------------------------------------- parent: running children


def run_child(job: dict, workdir: Path, label: str, timeout: float = 3600.0, spy: bool = False,
              script: Path | None = None) -> dict:
    """Run one job of ``script``'s ``_child`` entry (default: this file's) in a fresh subprocess; returns its
    result plus ``peak_rss_gb`` (ru_maxrss via wait4)."""
    spec_path, out_path = workdir / f"{label}.job.json", workdir / f"{label}.out.json"
    log_path, spy_path = workdir / f"{label}.log", workdir / f"{label}.spy.txt"
    atomic_write_json(spec_path, job, indent=1, default=str)
    cmd = [sys.executable, str(script or Path(__file__).resolve()), "_child", str(spec_path), str(out_path)]
    if spy:
        spy_bin = Path(sys.executable).with_name("py-spy")
        cmd = [str(spy_bin), "record", "-r", "20", "-f", "raw", "--nonblocking", "-o", str(spy_path), "--", *cmd]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    env.update(job.get("arm", {}).get("env", {}))
    t0 = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=str(ROOT), env=env)
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() - t0 > timeout:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.2)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0 or not out_path.exists():
        tail = log_path.read_text()[-4000:]
        raise RuntimeError(f"{label}: child failed (exit {proc.returncode}); log {log_path}:\n{tail}")
    result = json.loads(out_path.read_text())
    result["peak_rss_gb"] = usage.ru_maxrss / 1024**2
    result["load_avg_end"] = os.getloadavg()[0]
    result["process_wall_s"] = time.perf_counter() - t0
    if spy and spy_path.exists():
        result["spy"] = summarise_spy(spy_path.read_text())
    return result


PHASES = (  # (phase, substrings of a py-spy frame); the first phase whose pattern is in the stack wins
    ("backward", ("backward (torch/_tensor.py", "backward (torch/autograd/")),
    ("optimizer + clip", ("clip_grad_norm_", "torch/optim/", "optimizer_step", "_clip_grad_norm")),
    ("reward", ("RewardFunctions.score", "score (apmpo/trainer/setup.py", "_calculate_rewards", "apmpo/rewards/")),
    ("generation", ("generate_rollouts", "_generate_single_turn", "_shared_prefix_cache")),
    ("forward (log-probs)", ("completion_log_probs", "_get_per_token_logps_and_entropies", "_compute_loss",
                             "batch_log_probs")),
    ("model + data load", ("load_model_and_tokenizer", "from_pretrained", "load_data", "make_task_examples",
                           "GRPOTrainer.__init__", "__init__ (trl/trainer/grpo_trainer.py")),
    ("imports", ("_find_and_load",)),
)


def summarise_spy(raw: str) -> dict:
    """Phase shares and top leaf functions of a py-spy raw (collapsed stacks) profile."""
    phases: dict[str, int] = {}
    leaves: dict[str, int] = {}
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        phase = "other"
        for name, patterns in PHASES:
            if any(p in stack for p in patterns):
                phase = name
                break
        phases[phase] = phases.get(phase, 0) + n
        leaf = stack.split(";")[-1]
        leaves[leaf] = leaves.get(leaf, 0) + n
    top = sorted(leaves.items(), key=lambda kv: -kv[1])[:12]
    return {"samples": total, "phases": {k: v / max(total, 1) for k, v in sorted(phases.items(), key=lambda kv: -kv[1])},
            "top_leaves": [(k, v / max(total, 1)) for k, v in top]}


# --------------------------------------------------------------------------- parent: aggregation


def _stat(values: list[float]) -> dict[str, float] | None:
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def _decode_step_seconds(s: dict) -> float | None:
    """Seconds per decode step: the engine's decode time / its decode steps; generate: its time / its forward passes
    (the prompt's pass included)."""
    if s.get("decode_s") and s.get("decode_steps"):
        return s["decode_s"] / s["decode_steps"]
    return s["gen_s"] / s["gen_passes"] if s.get("gen_passes") else None


def _decode_rows(s: dict) -> float | None:
    """Rows computed per decode step (mean over the step's decode steps or generate's forward passes)."""
    if s.get("decode_row_steps") and s.get("decode_steps"):
        return s["decode_row_steps"] / s["decode_steps"]
    return s["gen_pass_rows"] / s["gen_passes"] if s.get("gen_passes") else None


def summarise_arm(runs: list[dict], warmup: int) -> dict:
    """Medians and ranges over the measured steps of all runs of one arm."""
    steps = [s for r in runs for s in r["steps"][warmup:]]
    shape = runs[0]["shape"]

    def per_step(fn):
        return _stat([fn(s) for s in steps])

    return {
        "gen_tok_s": per_step(lambda s: s["gen_tokens"] / s["gen_s"] if s.get("gen_s") else None),
        "train_tok_s": per_step(lambda s: s["batch_tokens"] / s["train_s"] if s.get("train_s", 0) > 0 else None),
        "step_s": per_step(lambda s: s["step_s"]),
        "step_tok_s": per_step(lambda s: s["batch_tokens"] / s["step_s"]),
        "train_s": per_step(lambda s: s["train_s"]),
        "gen_s": per_step(lambda s: s["gen_s"]),
        "rollout_other_s": per_step(lambda s: s["rollout_s"] - s["gen_s"]),
        "train_flop_s": per_step(lambda s: _step_flops(shape, s["body_tokens_grad"], s["head_tokens_grad"])
                                 / s["train_s"] if s.get("train_s", 0) > 0 else None),
        "completion_len": per_step(lambda s: s["completion_tokens"] / max(s["rows"], 1)),
        "decode_slot_use": per_step(lambda s: s["completion_tokens"] / s["row_steps"] if s.get("row_steps") else
                                    # results written before row-steps were counted: rows x width, what generate computes
                                    s["completion_tokens"] / s["rows"] / s["gen_width"] if s.get("gen_width") else None),
        "decode_step_s": per_step(_decode_step_seconds),
        "decode_rows": per_step(_decode_rows),
        "prefill_s": per_step(lambda s: s.get("prefill_s")),
        "weight_s": per_step(lambda s: s.get("weight_s")),
        "batch_tokens": per_step(lambda s: s["batch_tokens"]),
        "trained_rows": per_step(lambda s: s.get("trained_rows")),
        "zero_adv_frac": per_step(lambda s: s.get("zero_adv_rows", 0) / max(s["rows"], 1)),
        "body_tokens_grad": per_step(lambda s: s["body_tokens_grad"]),
        "head_tokens_grad": per_step(lambda s: s["head_tokens_grad"]),
        "peak_rss_gb": _stat([r["peak_rss_gb"] for r in runs]),
        "rss_before_first_step_gb": _stat([r.get("rss_before_first_step_gb") for r in runs]),
        "peak_device_gb": per_step(lambda s: s.get("peak_device_gb")),
        "rss_step_start_gb": per_step(lambda s: s.get("rss_step_start_gb")),
        "rss_peak_rollout_gb": per_step(lambda s: s.get("rss_peak_rollout_gb")),
        "rss_peak_train_gb": per_step(lambda s: s.get("rss_peak_train_gb")),
        **{f"peak_{key}": _stat([(r.get("heap_at_peak") or {}).get(key) for r in runs])
           for key in ("heap_used_gb", "heap_free_gb", "mmapped_gb")},
        "load_avg_end": _stat([r.get("load_avg_end") for r in runs]),
        "runs": len(runs),
        "shape": shape,
    }


# --------------------------------------------------------------------------- parent: report


def _fmt(stat: dict | None, digits: int = 1, scale: float = 1.0) -> str:
    if not stat:
        return "-"
    f = f"{{:.{digits}f}}"
    return f"{f.format(stat['median'] * scale)} [{f.format(stat['min'] * scale)}-{f.format(stat['max'] * scale)}]"


def _ratio(a: dict | None, b: dict | None) -> str:
    if not a or not b or not b["median"]:
        return "-"
    return f"{a['median'] / b['median']:.2f}x"


def workload_table(summary: dict[str, dict], baseline: str = "trl") -> str:
    base = summary.get(baseline)
    cols = [("gen tok/s", "gen_tok_s", 0, 1.0), ("train tok/s", "train_tok_s", 0, 1.0), ("s/step", "step_s", 2, 1.0),
            ("step tok/s", "step_tok_s", 0, 1.0), ("peak RSS GB", "peak_rss_gb", 2, 1.0)]
    head = ("| arm | " + " | ".join(f"{c} | vs TRL" for c, *_ in cols)
            + " | completion len | decode-slot use | zero-adv rows | trained rows |")
    lines = [head, "|" + "---|" * (1 + 2 * len(cols) + 4)]
    for arm, s in summary.items():
        cells = []
        for _, key, digits, scale in cols:
            cells += [_fmt(s[key], digits, scale), _ratio(s[key], base[key]) if base else "-"]
        zero = s["zero_adv_frac"]["median"] if s["zero_adv_frac"] else 0.0
        use = f"{s['decode_slot_use']['median']:.0%}" if s.get("decode_slot_use") else "-"
        lines.append(f"| {arm} | " + " | ".join(cells) + f" | {_fmt(s['completion_len'], 1)} | {use} | {zero:.0%} | "
                     f"{_fmt(s['trained_rows'], 0)} |")
    return "\n".join(lines)


def best_case_table(summary: dict[str, dict], baseline: str = "trl") -> str:
    """The least-contended view: each arm's best step (contention slows steps at random, never speeds them up)."""
    base = summary.get(baseline)
    cols = [("best gen tok/s", "gen_tok_s", "max"), ("best train tok/s", "train_tok_s", "max"),
            ("best s/step", "step_s", "min"), ("best step tok/s", "step_tok_s", "max")]
    lines = [("| arm | " + " | ".join(f"{c} | vs TRL" for c, *_ in cols) + " |"), "|" + "---|" * (1 + 2 * len(cols))]
    for arm, s in summary.items():
        cells = []
        for _, key, which in cols:
            value = s[key][which] if s[key] else None
            ref = base[key][which] if base and base[key] else None
            cells += [f"{value:.2f}" if key == "step_s" else f"{value:.0f}" if value is not None else "-",
                      f"{value / ref:.2f}x" if value is not None and ref else "-"]
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def flops_table(summary: dict[str, dict], peak: float) -> str:
    lines = [("| arm | train FLOP/s (GFLOP/s) | fraction of matmul peak | body tokens / step (grad) | "
             "LM-head tokens / step (grad) | train s |"), "|---|---|---|---|---|---|"]
    for arm, s in summary.items():
        f = s["train_flop_s"]
        frac = f"{f['median'] / peak:.0%} [{f['min'] / peak:.0%}-{f['max'] / peak:.0%}]" if f and peak else "-"
        lines.append(f"| {arm} | {_fmt(f, 1, 1e-9)} | {frac} | {_fmt(s['body_tokens_grad'], 0)} | "
                     f"{_fmt(s['head_tokens_grad'], 0)} | {_fmt(s['train_s'], 2)} |")
    return "\n".join(lines)


def memory_table(summary: dict[str, dict]) -> str:
    """RSS by phase, and glibc's heap at the sampled peak: in use, free (held by the allocator), mmapped."""
    lines = [("| arm | RSS before step 1 | RSS at step start | peak in sampling | peak in training | process peak "
             "(ru_maxrss) | at the peak: heap in use | heap free (allocator) | mmapped |"),
             "|---|---|---|---|---|---|---|---|---|"]
    for arm, s in summary.items():
        lines.append(f"| {arm} | {_fmt(s['rss_before_first_step_gb'], 2)} | {_fmt(s['rss_step_start_gb'], 2)} | "
                     f"{_fmt(s['rss_peak_rollout_gb'], 2)} | {_fmt(s['rss_peak_train_gb'], 2)} | "
                     f"{_fmt(s['peak_rss_gb'], 2)} | {_fmt(s.get('peak_heap_used_gb'), 2)} | "
                     f"{_fmt(s.get('peak_heap_free_gb'), 2)} | {_fmt(s.get('peak_mmapped_gb'), 2)} |")
    return "\n".join(lines)


def lever_table(summary: dict[str, dict]) -> str:
    base = summary.get("grpo_noskip")
    lines = [("| lever (arm) | what changes | s/step | vs base | train s | vs base | gen tok/s | vs base | "
             "peak RSS GB | vs base |"), "|---|---|---|---|---|---|---|---|---|---|"]
    for arm, doc in LEVER_DOC.items():
        s = summary.get(arm)
        if not s or not base:
            continue
        lines.append(f"| {arm} | {doc} | {_fmt(s['step_s'], 2)} | {_ratio(s['step_s'], base['step_s'])} | "
                     f"{_fmt(s['train_s'], 2)} | {_ratio(s['train_s'], base['train_s'])} | {_fmt(s['gen_tok_s'], 0)} | "
                     f"{_ratio(s['gen_tok_s'], base['gen_tok_s'])} | {_fmt(s['peak_rss_gb'], 2)} | "
                     f"{_ratio(s['peak_rss_gb'], base['peak_rss_gb'])} |")
    return "\n".join(lines)


MICRO_DOC = {
    "trainer_pass": "our gradient pass as the trainer runs it: micro-batches in the cheapest of three orders "
                    "(sequence length, completion length, group by group), trimmed, each distinct prompt run once "
                    "per micro-batch and shared through the KV cache, chunked LM head (1024), recomputed logits, "
                    "entropy",
    "no_share_prompt": "same without the shared prompt pass (optim.share_prompt_forward=false): length-sorted "
                       "micro-batches, every row runs its own prompt",
    "unsorted_untrimmed": "no shared prompt, micro-batches in sampling order at the batch's full padded width "
                          "(TRL's layout)",
    "full_logits": "no shared prompt, full [n, L, V] logits -> fp32 log_softmax -> gather (no chunking)",
    "keep_probs": "no shared prompt, chunked head keeping each chunk's probabilities for backward "
                  "(recompute_logits=False)",
    "no_entropy": "no shared prompt, chunked head without the entropy metric",
    "one_chunk": "no shared prompt, one LM-head chunk per micro-batch (optim.logprob_chunk_size=2^20)",
    "old_logprob_pass": "a no-grad log-prob pass over the batch as the trainer runs it: what on-policy reuse "
                        "(mu=1) saves",
    "gen_engine": "our generate_rollouts with the fast sampling engine (rollout.engine=fast, the default)",
    "gen_share_prefill": "our generate_rollouts with generate (rollout.engine=hf), prompt prefill shared across the G "
                         "samples",
    "gen_plain": "our generate_rollouts with generate and share_prefill=False (TRL's way)",
    "gen_static_cache": "model.generate with cache_implementation='static' (no shared prefill)",
    "opt_fused": "AdamW step, fused=True (ours, and TRL's default adamw_torch_fused)",
    "opt_foreach": "AdamW step, foreach=True (multi-tensor; ours on CPU before fused)",
    "loss_grpo": "policy_loss('grpo') forward + backward over the batch's [N, T] in micro-batches",
    "loss_apmpo": "policy_loss('apmpo') likewise (power mean, FAC clip)",
}


def micro_table(micro: dict) -> str:
    lines = ["| variant | what | seconds (median [min-max]) | vs reference | peak RSS increase GB |",
             "|---|---|---|---|---|"]
    refs = {"no_share_prompt": "trainer_pass", "unsorted_untrimmed": "no_share_prompt",
            "full_logits": "no_share_prompt", "keep_probs": "no_share_prompt",
            "no_entropy": "no_share_prompt", "one_chunk": "no_share_prompt", "opt_foreach": "opt_fused",
            "old_logprob_pass": "trainer_pass", "gen_plain": "gen_share_prefill", "gen_engine": "gen_share_prefill",
            "gen_static_cache": "gen_plain", "loss_apmpo": "loss_grpo"}
    v = micro["variants"]
    for name, doc in MICRO_DOC.items():
        if name not in v:
            continue
        s = v[name]
        ref = refs.get(name)
        rel = f"{s['median_s'] / v[ref]['median_s']:.2f}x {ref}" if ref in v else "-"
        mem = f"{s['peak_rss_increase_gb']:.2f}" if "peak_rss_increase_gb" in s else "-"
        lines.append(f"| {name} | {doc} | {s['median_s']:.3f} [{s['min_s']:.3f}-{s['max_s']:.3f}] | "
                     f"{rel} | {mem} |")
    return "\n".join(lines)


def _met(ok: bool) -> str:
    return "met" if ok else "MISSED"


def goals(summary: dict[str, dict], peak: float, micro: dict | None) -> list[str]:
    """Issue 14's goals (generation, decode-slot use, whole step, every-row arm, peak RSS, APMPO vs GRPO), then the
    training phase's share of the matmul peak; each line says met or MISSED."""
    out = []
    trl, ours, every_row = summary.get("trl"), summary.get("grpo"), summary.get("grpo_noskip")

    def ratio(s: dict | None, key: str) -> float | None:
        return s[key]["median"] / trl[key]["median"] if s and trl and s.get(key) and trl.get(key) else None

    gen = ratio(ours, "gen_tok_s")
    if gen is not None:
        out.append(f"- generation: {gen:.2f}x TRL's tokens/s (goal >= 2x: {_met(gen >= 2)})")
    if ours and ours.get("decode_slot_use"):
        use = ours["decode_slot_use"]["median"]
        out.append(f"- decode-slot use (completion tokens / computed row-steps): {use:.0%} (goal >= 90%: "
                   f"{_met(use >= 0.9)}); TRL {trl['decode_slot_use']['median']:.0%}" if trl else "")
    step = ratio(ours, "step_tok_s")
    if step is not None:
        out.append(f"- whole step: {step:.2f}x TRL's throughput (goal >= 2.5x: {_met(step >= 2.5)})")
    step_every = ratio(every_row, "step_tok_s")
    if step_every is not None:
        out.append(f"- every-row arm (grpo_noskip): {step_every:.2f}x TRL's throughput (goal >= 2x: "
                   f"{_met(step_every >= 2)})")
    rss = ratio(ours, "peak_rss_gb")
    if rss is not None:
        out.append(f"- peak RSS (our defaults): {rss:.2f}x TRL's (goal <= 0.8x: {_met(rss <= 0.8)})")
    if summary.get("grpo") and summary.get("apmpo"):
        g, a = summary["grpo"]["step_s"], summary["apmpo"]["step_s"]
        over = (a["median"] - g["median"]) / g["median"]
        overlap = a["min"] <= g["max"] and g["min"] <= a["max"]
        out.append(f"- APMPO vs GRPO, end to end: {over:+.1%} of the step (medians; goal within 3%: "
                   f"{_met(abs(over) <= 0.03)}; ranges GRPO {g['min']:.2f}-{g['max']:.2f} s, APMPO "
                   f"{a['min']:.2f}-{a['max']:.2f} s"
                   + (": the ranges overlap, the step-to-step variation is larger than the difference)"
                      if overlap else ")"))
        if micro and {"loss_apmpo", "loss_grpo"} <= set(micro["variants"]):
            extra = micro["variants"]["loss_apmpo"]["median_s"] - micro["variants"]["loss_grpo"]["median_s"]
            out.append(f"- APMPO vs GRPO, the loss alone (micro): {extra * 1e3:+.1f} ms per update = "
                       f"{extra / g['median']:+.2%} of the median GRPO step (goal <= 3%: {_met(extra / g['median'] <= 0.03)})")
    for arm in ("grpo_noskip", "grpo", "trl"):
        s = summary.get(arm)
        if s and s["train_flop_s"] and peak:
            frac = s["train_flop_s"]["median"] / peak
            out.append(f"- {arm}: training-phase FLOP/s = {frac:.0%} of the measured fp32 matmul peak (issue 6's "
                       f"goal >= 75%: {_met(frac >= 0.75)})")
    return [line for line in out if line]


def roofline_table(summary: dict[str, dict], peak: float, bandwidth: float, dtype_bytes: int) -> str:
    """Per decode step: what reading the weights once and the matmul FLOPs would take at the measured bandwidth and
    matmul peak, against the measured time."""
    lines = [("| arm | rows per decode step | weights GB | at bandwidth ms | GFLOP | at matmul peak ms | bound ms "
              "(the larger) | measured ms | measured / bound |"), "|---|---|---|---|---|---|---|---|---|"]
    for arm, s in summary.items():
        if not s.get("decode_step_s") or not s.get("decode_rows"):
            continue
        shape = s["shape"]
        weight_bytes = shape["params"] * dtype_bytes  # a tied LM head is the embedding: read once
        rows = s["decode_rows"]["median"]
        flops = 2.0 * (shape["body_params"] + shape["hidden"] * shape["vocab"]) * rows
        t_bytes, t_flops = weight_bytes / bandwidth, flops / peak
        bound, measured = max(t_bytes, t_flops), s["decode_step_s"]["median"]
        lines.append(f"| {arm} | {rows:.1f} | {weight_bytes / 1e9:.2f} | {t_bytes * 1e3:.0f} | {flops / 1e9:.1f} | "
                     f"{t_flops * 1e3:.0f} | {bound * 1e3:.0f} | {measured * 1e3:.0f} | {measured / bound:.1f}x |")
    return "\n".join(lines)


def profile_section(profile: dict | None, spies: dict[str, dict]) -> str:
    lines = []
    if profile and profile.get("profile"):
        rows = profile["profile"]
        total = rows[0]["self_s"]
        lines += [(f"torch.profiler, one of our steps (workload {profile.get('workload')}, arm grpo_noskip, step "
                  f"{profile.get('profile_step')}), ops by self CPU time:"), "",
                  "| op | self s | share | calls |", "|---|---|---|---|"]
        for r in rows[1:16]:
            lines.append(f"| `{r['name']}` | {r['self_s']:.2f} | {r['self_s'] / total:.0%} | {r['calls']} |")
        lines.append(f"| (all ops) | {total:.2f} | 100% | |")
        lines.append("")
    for arm, spy in spies.items():
        if not spy:
            continue
        lines += [(f"py-spy (20 Hz, whole process incl. imports and model load), arm `{arm}`, "
                  f"{spy['samples']} samples; phase shares:"), "",
                  "| phase | share |", "|---|---|"]
        lines += [f"| {k} | {v:.0%} |" for k, v in spy["phases"].items()]
        lines += ["", "top leaf frames: " + "; ".join(f"`{k}` {v:.0%}" for k, v in spy["top_leaves"][:8]), ""]
    return "\n".join(lines)


def _peak_line(report: dict) -> str:
    if not report.get("peak"):
        return "- fp32 matmul peak: not measured"
    medians = ", ".join(f"{p['median'] / 1e9:.0f}" for p in report["peak_runs"])
    line = (f"- fp32 matmul peak ({report['peak']['n']}^3, measured {len(report['peak_runs'])}x over the run): best "
            f"{report['peak']['best'] / 1e9:.1f} GFLOP/s; per-measurement medians {medians} GFLOP/s")
    if report.get("bandwidth"):
        reads = ", ".join(f"{p['bandwidth_median'] / 1e9:.1f}" for p in report["peak_runs"] if "bandwidth_median" in p)
        line += (f"\n- memory read bandwidth (sum over a 512 MB fp32 tensor, same threads): best "
                 f"{report['bandwidth'] / 1e9:.1f} GB/s; per-measurement medians {reads} GB/s")
    return line


def render_report(report: dict) -> str:
    m = report["machine"]
    peak = report["peak"]["best"] if report.get("peak") else 0.0
    out = [f"# Speed and memory vs TRL's GRPOTrainer: {report['date']}", "",
           "Generated by `benchmarks/bench_vs_trl.py` (issue 6); see the script's docstring for the definitions.", "",
           "## Command", "", "```", report["command"], "```", "",
           "## Machine", "",
           (f"- CPU: {m.get('cpu')} ({m.get('simd')}), {m.get('cores')} logical CPUs, "
           f"{m.get('memory_gb')} GB RAM; {m.get('platform')}"),
           (f"- Python {m.get('python')}, torch {m.get('torch')}, transformers {m.get('transformers')}, "
           f"TRL {m.get('trl')}, accelerate {m.get('accelerate')}, datasets {m.get('datasets')}"),
           (f"- torch threads per run: {report['threads']}; load average (1/5/15 min) at start "
           f"{report['load_start']}, at end {report['load_end']} (the benchmark's own runs use "
           f"{report['threads']} threads; a load well above that means other jobs shared the CPU; arms were "
           "alternated so that each sees the same conditions)"),
           _peak_line(report),
           f"- wall time of the whole benchmark: {report['wall_s'] / 60:.1f} min", ""]
    for name, w in report["workloads"].items():
        spec = w["spec"]
        out += [f"## Workload `{name}`", "",
                (f"model `{spec['model']}` ({spec['dtype']}, {spec['device']}; {w['shape']['params'] / 1e6:.1f}M params, "
                f"{w['shape']['body_params'] / 1e6:.1f}M non-embedding, hidden {w['shape']['hidden']}, vocab "
                f"{w['shape']['vocab']}), built-in `arithmetic` task {spec['task']}, reward "
                f"{'exact match (the task verifier)' if spec['reward'] == 'task' else 'parity_reward (fraction of even token ids)'}; "
                f"B = {spec['prompts_per_step']} prompts x G = {spec['group_size']}, max new tokens "
                f"{spec['max_new_tokens']}, micro-batch {spec['micro_batch_size']}, mu = 1, beta = 0, temperature 1.0, "
                f"lr {spec['lr']}, seed {spec['seed']}; {spec['steps']} steps per run, the first {spec['warmup']} "
                f"left out; {w['reps']} alternating reps (arm order per rep: {', '.join(w['arms'])})."), "",
                ("Medians [min-max] over the measured steps of all reps (peak RSS: over reps); ratios are median / "
                "TRL's median (higher is better for tok/s, lower for s/step and RSS)."), "",
                workload_table(w["summary"]), "",
                ("Best step of each arm (min s/step, max tok/s over all measured steps; the least-disturbed view "
                 "when anything else ran on the machine):"), "", best_case_table(w["summary"]), ""]
        loads = ", ".join(f"{a} {_fmt(s.get('load_avg_end'), 1)}" for a, s in w["summary"].items())
        out += [f"1-minute load average at the end of each arm's runs (median [min-max]): {loads}.", ""]
        out += ["Memory (GB, sampled every 50 ms in the process; measured steps only, except the first column):", "",
                memory_table(w["summary"]), ""]
        if w.get("trl_settings"):
            out += ["TRL settings as resolved: " + ", ".join(f"{k}={v}" for k, v in w["trl_settings"].items()), ""]
        if peak:
            out += [("Training-phase FLOP/s (6 x non-embedding params x tokens through the gradient forward + 6 x "
                    "hidden x vocab x LM-head tokens, per second of the training phase):"), "",
                    flops_table(w["summary"], peak), ""]
        if peak and report.get("bandwidth"):
            out += [(f"Roofline per decode step (measured read bandwidth {report['bandwidth'] / 1e9:.1f} GB/s, "
                     f"matmul peak {peak / 1e9:.0f} GFLOP/s; FLOPs = 2 x (non-embedding params + hidden x vocab) x "
                     "rows, attention not counted; measured: the engine's decode time per decode step, for "
                     "generate (engine=hf, TRL) its time per forward pass, the prompt's pass included):"), "",
                    roofline_table(w["summary"], peak, report["bandwidth"],
                                   2 if spec["dtype"] in ("bfloat16", "bf16") else 4), ""]
        if any(a in w["summary"] for a in LEVER_ARMS):
            out += ["### Levers with a config switch (our trainer, against `grpo_noskip`)", "",
                    lever_table(w["summary"]), ""]
        out += ["### Goals", "", *goals(w["summary"], peak, report.get("micro") if name == report.get("micro_workload")
                                         else None), ""]
    if report.get("micro"):
        mi = report["micro"]
        out += [(f"## Levers without a switch: microbenchmarks on one stored rollout batch ({report['micro_workload']}, "
                f"{mi['rows']} rows, {mi['completion_tokens']} completion tokens)"), "",
                ("Each timing row is one pass over the whole batch in micro-batches of the workload's size "
                "(forward + loss + backward, no optimizer step), alternated, median of 2 after a warm-up; "
                "peak RSS increase: ru_maxrss minus RSS before the first pass, in a process running only that "
                "variant (includes the 0.5 GB of fp32 gradients the first backward allocates)."), "",
                micro_table(mi), ""]
    prof = profile_section(report.get("profile"), report.get("spy", {}))
    if prof:
        out += ["## Profile", "", prof, ""]
    return "\n".join(out)


# --------------------------------------------------------------------------- parent: the whole benchmark


def benchmark(args) -> dict:
    t_start = time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix="bench_vs_trl_"))
    report: dict[str, Any] = {
        "date": _dt.date.today().isoformat(), "command": " ".join(["python", *sys.argv]),
        "machine": machine_info(("torch", "transformers", "trl", "accelerate", "datasets")), "threads": args.threads,
        "load_start": " ".join(f"{x:.2f}" for x in os.getloadavg()), "workloads": {}, "peak_runs": [], "spy": {},
    }
    print(f"[bench] work directory {workdir}", file=sys.stderr, flush=True)

    def peak(tag: str) -> None:
        spec = {"device": "cpu", "dtype": "float32", "threads": args.threads}
        report["peak_runs"].append(run_child({"mode": "peak", "spec": spec}, workdir, f"peak-{tag}"))

    if not args.no_peak:
        peak("start")
    for name in args.workload:
        spec = dict(WORKLOADS[name], threads=args.threads)
        if args.steps:
            spec["steps"] = args.steps
        arms = {a: v for a, v in CORE_ARMS.items() if not args.arms or a in args.arms}
        if name == "smollm2" and not args.no_levers:
            other = 2 if args.threads == 1 else 1
            arms.update({k: {**v, "threads": other} if v.get("threads") == "other" else v for k, v in LEVER_ARMS.items()})
        runs: dict[str, list[dict]] = {a: [] for a in arms}
        for rep in range(args.reps):
            for arm_name, arm in arms.items():
                if rep >= (args.lever_reps if arm_name in LEVER_ARMS else args.reps):
                    continue
                print(f"[bench] {name} rep {rep + 1}/{args.reps}: {arm_name}", file=sys.stderr, flush=True)
                r = run_child({"mode": "arm", "spec": spec, "arm": arm}, workdir, f"{name}-{arm_name}-{rep}")
                runs[arm_name].append(r)
                print(f"[bench]   steps {[round(s['step_s'], 1) for s in r['steps']]} s, "
                      f"peak RSS {r['peak_rss_gb']:.2f} GB", file=sys.stderr, flush=True)
        summary = {a: summarise_arm(rs, spec["warmup"]) for a, rs in runs.items() if rs}
        trl_runs = runs.get("trl") or []
        report["workloads"][name] = {"spec": spec, "reps": args.reps, "arms": list(arms), "summary": summary,
                                     "shape": summary[next(iter(summary))]["shape"],
                                     "trl_settings": trl_runs[0].get("trl_settings") if trl_runs else None,
                                     "raw": runs}
        if not args.no_peak:
            peak(name)
    if not args.no_micro:
        name = "smollm2" if "smollm2" in args.workload else args.workload[0]
        spec = dict(WORKLOADS[name], threads=args.threads)
        batch_path = str(workdir / "micro_batch.pt")
        print(f"[bench] micro: sampling the stored batch ({name})", file=sys.stderr, flush=True)
        run_child({"mode": "micro_batch", "spec": spec, "batch_path": batch_path}, workdir, "micro-batch")
        timing = [v for v in MICRO_DOC if not args.micro_variants or v in args.micro_variants]
        print("[bench] micro: timings", file=sys.stderr, flush=True)
        micro = run_child({"mode": "micro", "spec": spec, "variants": timing, "batch_path": batch_path, "reps": 2},
                          workdir, "micro-time")
        for variant in [v for v in ("trainer_pass", "full_logits", "keep_probs", "one_chunk") if v in timing]:
            print(f"[bench] micro: memory of {variant}", file=sys.stderr, flush=True)
            mem = run_child({"mode": "micro", "spec": spec, "variants": [variant], "batch_path": batch_path, "reps": 1},
                            workdir, f"micro-mem-{variant}")
            micro["variants"][variant]["peak_rss_increase_gb"] = mem["variants"][variant]["peak_rss_increase_gb"]
        report["micro"], report["micro_workload"] = micro, name
    if not args.no_profile:
        name = "smollm2" if "smollm2" in args.workload else args.workload[0]
        spec = dict(WORKLOADS[name], threads=args.threads, steps=2)
        print("[bench] profile: torch.profiler on one of our steps", file=sys.stderr, flush=True)
        report["profile"] = run_child({"mode": "profile", "spec": spec, "arm": CORE_ARMS["grpo_noskip"],
                                       "profile_step": min(2, spec["steps"])}, workdir, "profile")
        report["profile"].pop("steps", None)
        report["profile"].update(workload=name, profile_step=min(2, spec["steps"]))
        for arm in ("grpo_noskip", "trl"):
            print(f"[bench] profile: py-spy over a whole run of {arm}", file=sys.stderr, flush=True)
            try:
                r = run_child({"mode": "arm", "spec": spec, "arm": CORE_ARMS[arm]}, workdir, f"spy-{arm}", spy=True)
                report["spy"][arm] = r.get("spy")
            except (RuntimeError, FileNotFoundError) as exc:
                print(f"[bench] py-spy failed for {arm}: {exc}", file=sys.stderr)
    if report["peak_runs"]:
        best = max(report["peak_runs"], key=lambda p: p["best"])
        report["peak"] = {"best": best["best"], "n": best["n"]}
        report["bandwidth"] = max(p.get("bandwidth_best", 0.0) for p in report["peak_runs"]) or None
    report["load_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    report["wall_s"] = time.perf_counter() - t_start
    report["workdir"] = str(workdir)
    return report


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "_child":
        child_main(argv[1], argv[2])
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workload", choices=sorted(WORKLOADS), action="append",
                        help="workload(s) (default: smollm2 and tiny)")
    parser.add_argument("--reps", type=int, default=3, help="alternating repetitions of the core arms")
    parser.add_argument("--lever-reps", type=int, default=2, help="repetitions of the lever arms (smollm2)")
    parser.add_argument("--steps", type=int, default=None, help="steps per run (default: the workload's)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads in every run")
    parser.add_argument("--arms", type=lambda t: [a for a in t.split(",") if a], default=None,
                        help=f"only these core arms (comma-separated; default all: {','.join(CORE_ARMS)})")
    parser.add_argument("--no-levers", action="store_true", help="skip the lever arms")
    parser.add_argument("--no-micro", action="store_true", help="skip the microbenchmarks")
    parser.add_argument("--no-profile", action="store_true", help="skip the profiles")
    parser.add_argument("--micro-variants", type=lambda t: [a for a in t.split(",") if a], default=None,
                        help=f"only these microbenchmarks (comma-separated; default all: {','.join(MICRO_DOC)})")
    parser.add_argument("--no-peak", action="store_true", help="skip the matmul peak measurement")
    parser.add_argument("--out", required=True, help="results markdown file (a .json with the raw data beside it)")
    parser.add_argument("--render", default=None, metavar="JSON",
                        help="only re-render the markdown from a results .json written by an earlier run")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.arms or []) - set(CORE_ARMS))
    if unknown:
        parser.error(f"--arms: unknown arm(s) {unknown}; known: {', '.join(CORE_ARMS)}")
    if args.render:
        text = render_report(json.loads(Path(args.render).read_text()))
        atomic_write_text(args.out, text)
        print(text)
        return 0
    args.workload = args.workload or ["smollm2", "tiny"]
    report = benchmark(args)
    text = render_report(report)
    atomic_write_text(args.out, text)
    atomic_write_text(Path(args.out).with_suffix(".json"), json.dumps(report, indent=1, default=str))
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
