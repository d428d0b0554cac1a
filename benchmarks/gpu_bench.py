"""GPU edition of ``bench_vs_trl.py``: our trainer (GRPO, APMPO) vs TRL's GRPOTrainer in bf16 (issue 6).

For a session lent an accelerator (H100/H200; no internet and no model weights there).
The whole run fits in ~8 minutes: one rep of each arm, 3 steps each (the first left out).

    # on the GPU machine, from the repo root (benchmarks/gpu_bench.sh does the wheel install first):
    python3 benchmarks/gpu_bench.py --out $OUT/gpu_$(date +%F).md

    # CPU check of the whole path with a shrunken model (a minute or two):
    .venv/bin/python benchmarks/gpu_bench.py --device cpu --shrink --out runs/gpu_check.md

The model is Qwen2.5-0.5B's shape (``QWEN25_05B``: 24 layers, hidden 896, 14 query /
2 key-value heads, MLP 4864, vocabulary 151936, tied embeddings, q/k/v biases),
randomly initialised from a ``Qwen2Config`` in-process and saved once to a temporary
directory that both trainers load (bf16). Its tokenizer is built in-process too: a
character-level BPE (no merges; the tiny model's characters, specials and chat
template) padded with filler tokens to the model's 151936 ids, so that every sampled
id decodes. A random model almost never samples EOS (p ~ 1/151936 per token), so
every completion runs to ``max_new_tokens`` (512 by default): the same, realistic,
length in every arm. The reward is ``parity_reward`` (fraction of even token ids: in
[0, 1], different for every completion, so no group has zero advantages).

Our default arms sample with the fast sampling engine (``apmpo.sampling.engine``, bf16 on
CUDA), ``grpo_hf`` with transformers ``generate``; the generation tokens/s of both and of
TRL, decode-slot use and a roofline per decode step (the weights' bytes at the measured
read bandwidth, the FLOPs at the measured bf16 matmul peak, against the measured time)
are in the results. Everything else is ``bench_vs_trl.py``'s: the same arms, settings, counters and
definitions; device timings are synchronised (``torch.cuda.synchronize``) at phase
ends; memory is the peak GPU memory allocated (``torch.cuda.max_memory_allocated``)
besides the process's peak RSS; the matmul peak is a bf16 8192^3 ``torch.matmul``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_vs_trl as bench

from apmpo.io import atomic_write_text
from apmpo.provenance import machine_info

QWEN25_05B: dict[str, Any] = {
    "vocab_size": 151936, "hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24, "num_attention_heads": 14,
    "num_key_value_heads": 2, "max_position_embeddings": 32768, "rope_theta": 1_000_000.0, "rms_norm_eps": 1e-6,
    "tie_word_embeddings": True, "hidden_act": "silu", "use_sliding_window": False,
}
"""Qwen2.5-0.5B(-Instruct)'s architecture fields (its config.json)."""

SHRUNK: dict[str, Any] = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2,
                              "num_key_value_heads": 1}
"""--shrink: the same model family and vocabulary at a size a CPU runs in seconds."""

GPU_WORKLOAD: dict[str, Any] = {
    "model": "qwen2.5-0.5b-shape (random)", "dtype": "bfloat16", "device": "cuda", "reward": "parity",
    "task": {"digits": [1, 2], "ops": "+-"}, "prompts_per_step": 8, "group_size": 8, "max_new_tokens": 512,
    "micro_batch_size": 16, "steps": 3, "warmup": 1, "lr": 1e-6, "seed": 0, "train_size": 2000,
}
"""B x G = 64 completions of 512 tokens per step, micro-batches of 16 (4 per optimizer step in TRL)."""

ARMS = ("grpo", "trl", "grpo_hf", "apmpo", "grpo_ckpt")
"""Run order; the budget guard drops the last ones first (``grpo``: ours with its defaults, sampling with the fast
engine in bf16; ``grpo_hf``: ours sampling with transformers generate, for the engine's gain on the same card;
``grpo_ckpt``: ours with activation checkpointing, TRL's default, for the like-for-like memory comparison)."""


def build_tokenizer(vocab_size: int):
    """Character-level fast tokenizer with ``vocab_size`` ids (filler tokens after the characters)."""
    from tokenizers import Tokenizer, decoders, models
    from transformers import PreTrainedTokenizerFast

    from apmpo.models.tiny import (
        BOS,
        CHARACTERS,
        EOS,
        PAD,
        ROLE_TOKENS,
        TINY_CHAT_TEMPLATE,
        UNK,
    )

    specials = [PAD, UNK, BOS, EOS, *ROLE_TOKENS]
    vocab = {token: index for index, token in enumerate(specials)}
    for char in CHARACTERS:
        vocab[char] = len(vocab)
    filler = 0
    while len(vocab) < vocab_size:  # multi-character fillers: never produced by encoding (no merges), decodable
        vocab[f"<x{filler}>"] = len(vocab)
        filler += 1
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=UNK))
    backend.decoder = decoders.Fuse()
    backend.add_special_tokens(specials)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token=PAD, unk_token=UNK, bos_token=BOS, eos_token=EOS,
        additional_special_tokens=list(ROLE_TOKENS), padding_side="left", model_max_length=32768,
    )
    tokenizer.chat_template = TINY_CHAT_TEMPLATE
    return tokenizer


def build_model_dir(path: Path, device: str, dtype: str, shrink: bool, seed: int) -> dict[str, Any]:
    """Random Qwen2.5-0.5B-shaped model + tokenizer saved to ``path``; returns the config fields used."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    fields = {**QWEN25_05B, **(SHRUNK if shrink else {})}
    tokenizer = build_tokenizer(fields["vocab_size"])
    config = Qwen2Config(**fields, pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id)
    torch_dtype = torch.bfloat16 if dtype in ("bfloat16", "bf16") else torch.float32
    torch.manual_seed(seed)
    with torch.device(device):
        model = Qwen2ForCausalLM(config).to(torch_dtype)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    n = sum(p.numel() for p in model.parameters())
    del model
    return {"fields": fields, "params": n}


def device_description(device: str) -> dict[str, Any]:
    info = machine_info()
    if device.startswith("cuda"):
        import torch

        info["gpu"] = torch.cuda.get_device_name(0)
        info["gpu_memory_gb"] = round(torch.cuda.get_device_properties(0).total_memory / 1024**3, 1)
        info["torch_cuda"] = torch.version.cuda
        try:
            info["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                            capture_output=True, text=True, timeout=30, check=False).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            info["driver"] = None
    return info


def device_memory_table(summary: dict[str, dict]) -> str:
    lines = ["| arm | peak GPU memory allocated GB | vs TRL | process peak RSS GB |", "|---|---|---|---|"]
    base = summary.get("trl")
    for arm, s in summary.items():
        ratio = bench._ratio(s["peak_device_gb"], base["peak_device_gb"]) if base else "-"
        lines.append(f"| {arm} | {bench._fmt(s['peak_device_gb'], 2)} | {ratio} | {bench._fmt(s['peak_rss_gb'], 2)} |")
    return "\n".join(lines)


def render(report: dict) -> str:
    m, spec = report["machine"], report["spec"]
    peak = report["peak"]["best"]
    summary = report["summary"]
    out = [f"# Speed and memory vs TRL's GRPOTrainer on {m.get('gpu') or spec['device']}: {report['date']}", "",
           "Generated by `benchmarks/gpu_bench.py` (issue 6); definitions as in `benchmarks/bench_vs_trl.py`.", "",
           "## Command", "", "```", report["command"], "```", "",
           "## Machine", "",
           f"- GPU: {m.get('gpu')} ({m.get('gpu_memory_gb')} GB), driver {m.get('driver')}, CUDA {m.get('torch_cuda')}",
           f"- CPU: {m.get('cpu')}, {m.get('logical_cpus')} logical CPUs; {m.get('platform')}",
           (f"- Python {m.get('python')}, torch {m.get('torch')}, transformers {m.get('transformers')}, TRL {m.get('trl')}, "
           f"accelerate {m.get('accelerate')}, datasets {m.get('datasets')}"),
           f"- {report['peak']['dtype']} matmul peak ({report['peak']['n']}^3): {peak / 1e12:.1f} TFLOP/s",
           (f"- wall time: {report['wall_s'] / 60:.1f} min; arms skipped for the time budget: "
           f"{', '.join(report['skipped']) or 'none'}"), "",
           "## Workload", "",
           (f"random Qwen2.5-0.5B-shaped model ({report['model']['params'] / 1e6:.0f}M params, "
           f"{'SHRUNK for a CPU check, ' if report['shrink'] else ''}{spec['dtype']}), arithmetic prompts, "
           f"parity reward; B = {spec['prompts_per_step']} x G = {spec['group_size']}, max new tokens "
           f"{spec['max_new_tokens']}, micro-batch {spec['micro_batch_size']}, mu = 1, beta = 0, temperature 1.0, "
           f"lr {spec['lr']}, seed {spec['seed']}; {spec['steps']} steps per arm, the first {spec['warmup']} left out; "
           f"one run per arm, in the order {', '.join(report['arms'])}."), "",
           bench.workload_table(summary), "",
           device_memory_table(summary), "",
           f"Training-phase FLOP/s against the {report['peak']['dtype']} matmul peak:", "",
           bench.flops_table(summary, peak), ""]
    if report["peak"].get("bandwidth_best"):
        bandwidth = report["peak"]["bandwidth_best"]
        out += [(f"Roofline per decode step (read bandwidth {bandwidth / 1e9:.0f} GB/s, matmul peak "
                 f"{peak / 1e12:.1f} TFLOP/s; definitions as in bench_vs_trl.py):"), "",
                bench.roofline_table(summary, peak, bandwidth, 2 if spec["dtype"] in ("bfloat16", "bf16") else 4), ""]
    out += ["Goals (issue 14's, measured on this card):", "", *bench.goals(summary, peak, None), ""]
    if report.get("trl_settings"):
        out += ["TRL settings as resolved: " + ", ".join(f"{k}={v}" for k, v in report["trl_settings"].items()), ""]
    if report.get("errors"):
        out += ["## Errors", "", *[f"- {arm}: {err}" for arm, err in report["errors"].items()], ""]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="results markdown file (a .json beside it)")
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu for a check")
    parser.add_argument("--shrink", action="store_true", help="a tiny model of the same family (CPU check)")
    parser.add_argument("--max-new-tokens", type=int, default=None, help="default 512 (16 with --shrink)")
    parser.add_argument("--steps", type=int, default=None, help="steps per arm (default 3)")
    parser.add_argument("--budget", type=float, default=450.0, help="seconds; arms that would not fit are skipped")
    parser.add_argument("--arms", default=",".join(ARMS), help="comma-separated arms, run in this order")
    args = parser.parse_args(argv)
    t_start = time.perf_counter()
    spec = dict(GPU_WORKLOAD, device=args.device)
    if args.device == "cpu":
        spec.update(dtype="float32", threads=os.cpu_count() or 1)
    if args.shrink:
        spec.update(prompts_per_step=2, group_size=4, micro_batch_size=4, max_new_tokens=16)
    if args.max_new_tokens:
        spec["max_new_tokens"] = args.max_new_tokens
    if args.steps:
        spec["steps"] = args.steps
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    unknown = [a for a in arms if a not in bench.CORE_ARMS]
    if unknown:
        parser.error(f"--arms: unknown arm(s) {unknown}; known: {sorted(bench.CORE_ARMS)}")

    workdir = Path(tempfile.mkdtemp(prefix="gpu_bench_"))
    model_dir = workdir / "model"
    print(f"[gpu-bench] building the model in {model_dir}", file=sys.stderr, flush=True)
    model_info = build_model_dir(model_dir, args.device, spec["dtype"], args.shrink, spec["seed"])
    spec["model_path"] = str(model_dir)
    report: dict[str, Any] = {
        "date": _dt.date.today().isoformat(), "command": " ".join(["python3", *sys.argv]),
        "machine": device_description(args.device), "spec": spec, "shrink": args.shrink, "model": model_info,
        "arms": arms, "skipped": [], "errors": {},
    }
    peak_spec = {"device": args.device, "dtype": spec["dtype"], "threads": spec.get("threads"),
                 "peak_n": 8192 if args.device.startswith("cuda") else 1024, "peak_reps": 10}
    report["peak"] = bench.run_child({"mode": "peak", "spec": peak_spec}, workdir, "peak")
    runs: dict[str, list[dict]] = {}
    last = 0.0
    for arm in arms:
        elapsed = time.perf_counter() - t_start
        if elapsed + last * 1.1 > args.budget:
            report["skipped"].append(arm)
            print(f"[gpu-bench] skipping {arm}: {elapsed:.0f} s used of {args.budget:.0f}", file=sys.stderr, flush=True)
            continue
        print(f"[gpu-bench] {arm} ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        try:
            runs[arm] = [bench.run_child({"mode": "arm", "spec": spec, "arm": bench.CORE_ARMS[arm]}, workdir, arm,
                                         timeout=max(args.budget - elapsed, 60.0))]
            steps = runs[arm][0]["steps"]
            print(f"[gpu-bench]   steps {[round(s['step_s'], 2) for s in steps]} s", file=sys.stderr, flush=True)
        except RuntimeError as exc:  # e.g. TRL not importable: keep the other arms
            report["errors"][arm] = str(exc)[-1500:]
            print(f"[gpu-bench]   {arm} failed: {str(exc)[-1500:]}", file=sys.stderr, flush=True)
        last = time.perf_counter() - t0
    report["summary"] = {a: bench.summarise_arm(rs, spec["warmup"]) for a, rs in runs.items()}
    report["trl_settings"] = runs["trl"][0].get("trl_settings") if "trl" in runs else None
    report["raw"] = runs
    report["wall_s"] = time.perf_counter() - t_start
    text = render(report)
    atomic_write_text(args.out, text)
    atomic_write_text(Path(args.out).with_suffix(".json"), json.dumps(report, indent=1, default=str))
    print(text)
    return 0 if runs else 1


if __name__ == "__main__":
    raise SystemExit(main())
