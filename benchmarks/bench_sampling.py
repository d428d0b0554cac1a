"""Generation speed on the RL rollout workload: our sampling engine, our rollout's ``generate``, TRL's generation (issue 14).

One command runs everything and writes the results file (on a shared machine, run it alone, e.g.
under ``flock`` on the lock file the other heavy jobs take):

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/bench_sampling.py \\
        --out benchmarks/results/sampling_cpu_$(date +%F).md

    .venv/bin/python benchmarks/bench_sampling.py --workload tiny --reps 1 --batches 2 --out runs/quick.md

Arms, each a fresh subprocess, alternated rep after rep (rep 1 runs every arm once, then rep 2, ...):

- ``engine``: :func:`apmpo.sampling.engine.sample_completions` (shared prefill, running rows only, own decode step),
  default weight layout (on CPU: fused projections prepacked for oneDNN, a copy of the weights while sampling);
- ``engine_shared``: the same with ``weight_layout="shared"`` (the model's own weight tensors, no copy);
- ``hf_rollout``: :func:`apmpo.sampling.rollout.generate_rollouts`, i.e. transformers' ``generate`` as our rollout
  calls it today (clean generation config, shared prompt prefix, dynamic KV cache);
- ``hf_continuous``: transformers' continuous batching with paged attention
  (``model.generate_batch``, what TRL runs with ``use_transformers_paged=True``), the same
  settings; it schedules requests itself, so its row-steps are not counted;
- ``trl``: TRL 1.16.0's own generation code as ``GRPOTrainer`` runs it with ``use_vllm=False``:
  ``GRPOTrainer._generate_single_turn`` on the output of ``_tokenize_prompts``, the prompts repeated G times
  consecutively (its ``RepeatSampler`` order), the model in training mode (gradient checkpointing switched off for
  generation by TRL itself), the ``GRPOConfig`` of ``bench_vs_trl.py`` (temperature 1, top-p 1, top-k 0).

Same workload in every arm: the model, B prompts of the built-in arithmetic task in our
``PromptSampler`` order (batch b takes the prompts of training step b), G samples each,
at most ``max_new_tokens`` tokens, temperature 1, ``torch.manual_seed(seed + b)`` before
batch b. The first batch of every run is a warm-up and left out.

Definitions (per batch; medians and [min-max] over the measured batches of all reps):

- tokens/s: completion tokens (EOS included) / wall seconds of the generation call;
- decode-slot use: completion tokens / row-steps computed, a row-step being one row whose
  next-token logits a sampling step computes (``generate``: every row of every forward
  pass inside it, finished rows included, counted with ``bench_vs_trl.RowSteps``; the
  engine: its running rows, ``stats["row_steps"]``);
- ms per decode step: seconds from the first decode forward pass (the first one that
  feeds sampled tokens) to the end of the call / the number of decode steps;
- roofline per decode step: for the average decode step of the arm (its average rows n
  and context length L), the time the bytes it must read take at the measured memory
  read bandwidth (all weights once + the KV cache of n rows x L positions) and the time
  its FLOPs take at the measured fp32 matmul peak (2 x matmul parameters x n + 4 x n x L x
  layers x heads x head_dim for attention), against the measured ms per decode step.

Peak RSS: the whole generation process (model, prompts, all batches; ``ru_maxrss``).
The matmul peak (2048^3, ``bench_vs_trl.run_peak``) and the read bandwidth (the sum of a
1 GiB tensor, best of 5) are measured in their own subprocesses before and after the arms.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from apmpo.io import atomic_write_json, atomic_write_text
from apmpo.provenance import machine_info

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_vs_trl import (  # noqa: E402  (a sibling script, importable once HERE is on the path)
    WORKLOADS,
    RowSteps,
    _load_data,
    _model_reference,
    _profile_table,
    _prompt_order,
    _setup_child,
    _stat,
    flop_shape,
    run_child,
    run_peak,
    trl_config,
    trl_inputs,
)

ARMS = ("engine", "engine_shared", "hf_rollout", "hf_continuous", "trl")
"""The generation paths compared (see the module docstring)."""

ARM_DOC = {
    "engine": "apmpo.sampling.engine.sample_completions (ours, new; CPU: prepacked weights)",
    "engine_shared": "the same with weight_layout='shared' (no weight copy)",
    "hf_rollout": "apmpo.sampling.rollout.generate_rollouts: transformers generate as our rollout calls it with rollout.engine=hf",
    "hf_continuous": "transformers generate_batch (continuous batching, paged attention)",
    "trl": "TRL GRPOTrainer._generate_single_turn (use_vllm=False: transformers generate)",
}


# --------------------------------------------------------------------------- children


def _model_shape(model) -> dict[str, Any]:
    """flop_shape plus what the roofline needs: layers, heads, KV heads, head dim, weight bytes."""
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    heads = int(config.num_attention_heads)
    unique = {p.data_ptr(): p for p in model.parameters()}
    return {**flop_shape(model), "layers": int(config.num_hidden_layers), "heads": heads,
            "kv_heads": int(getattr(config, "num_key_value_heads", None) or heads),
            "head_dim": int(getattr(config, "head_dim", None) or config.hidden_size // heads),
            "weight_bytes": sum(p.numel() * p.element_size() for p in unique.values()),
            "dtype_bytes": next(iter(unique.values())).element_size()}


def _hf_timing(counted: dict[str, Any], call_start: float, call_end: float) -> dict[str, Any]:
    """Step rows, prefill and decode seconds of one call around ``generate`` from its RowSteps record."""
    starts = counted["starts"]
    decode_start = starts[1] if len(starts) > 1 else call_end
    return {"step_rows": counted["step_rows"], "decode_steps": max(len(starts) - 1, 0),
            "prefill_s": decode_start - call_start, "decode_s": call_end - decode_start}


def _batches(spec: dict, tokenizer) -> tuple[list[list[str]], Any]:
    """The prompt texts of each batch (training step b's prompts) and the loaded data."""
    data = _load_data(spec, tokenizer)
    order = _prompt_order(spec, len(data.train))
    B = spec["prompts_per_step"]
    return [[data.train_prompts[i] for i in order[b * B:(b + 1) * B]] for b in range(spec["steps"])], data


def run_arm(spec: dict, arm: str, profile: bool = False) -> dict:
    """Generate ``spec["steps"]`` batches with one arm; per batch: seconds, tokens, row-steps, step timing."""
    import torch

    from apmpo.models import load_model_and_tokenizer
    from apmpo.sampling.engine import DecodeSpec, sample_completions
    from apmpo.sampling.rollout import encode_prompts, eos_token_ids, generate_rollouts
    from apmpo.sampling.settings import Sampling

    model, tokenizer = load_model_and_tokenizer(_model_reference(spec), dtype=spec["dtype"], device=spec["device"],
                                                seed=spec["seed"])
    shape = _model_shape(model)
    batches, data = _batches(spec, tokenizer)
    G, max_new = spec["group_size"], spec["max_new_tokens"]
    eos = eos_token_ids(model, tokenizer)
    sampling = Sampling(max_new_tokens=max_new, temperature=1.0, top_p=1.0, top_k=0)
    settings = DecodeSpec(sampling, tuple(eos), tokenizer.pad_token_id)
    hf_sampling = Sampling(max_new_tokens=max_new, temperature=1.0, top_p=1.0, top_k=0, engine="hf")
    counter = RowSteps(model) if arm in ("hf_rollout", "trl") else None
    if arm == "hf_continuous":
        from transformers import GenerationConfig

        continuous_config = GenerationConfig(max_new_tokens=max_new, do_sample=True, temperature=1.0, top_p=1.0, top_k=0,
                                             eos_token_id=list(eos), pad_token_id=tokenizer.pad_token_id)
        model.eval()
    trainer = None
    if arm == "trl":
        from trl import GRPOTrainer

        dataset, reward, _ = trl_inputs(spec, tokenizer)
        output_dir = tempfile.TemporaryDirectory()  # removed when the child exits
        trainer = GRPOTrainer(model=model, reward_funcs=reward, args=trl_config(spec, output_dir.name),
                              train_dataset=dataset, processing_class=tokenizer)
        trainer.model.train()  # as during training (dropout is off: disable_dropout=True)
    records, prof_table = [], None
    for b, texts in enumerate(batches):
        prompts = encode_prompts(tokenizer, texts, add_special_tokens=data.add_special_tokens, device=spec["device"])
        torch.manual_seed(spec["seed"] + b)
        profiler = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) \
            if profile and b == len(batches) - 1 else None
        if profiler is not None:
            profiler.__enter__()
        t0 = time.perf_counter()
        if arm.startswith("engine"):
            out = sample_completions(model, prompts.input_ids, prompts.attention_mask, settings, num_samples=G,
                                     weight_layout="shared" if arm == "engine_shared" else "auto")
            t1 = time.perf_counter()
            tokens, rows, width = int(out.lengths.sum()), len(out), int(out.completion_ids.shape[1])
            timing = {"step_rows": out.stats["step_rows"], "decode_steps": out.stats["decode_steps"],
                      "prefill_s": out.stats["prefill_seconds"], "decode_s": out.stats["decode_seconds"],
                      "weight_s": out.stats["weight_seconds"]}
            prompt_width = out.stats["prompt_width"]
        elif arm == "hf_rollout":
            ro = generate_rollouts(model, tokenizer, prompts, hf_sampling, num_samples=G)
            t1 = time.perf_counter()
            tokens, rows, width = int(ro.completion_mask.sum()), len(ro), int(ro.completion_ids.shape[1])
            timing = _hf_timing(counter.take(), t0, t1)
            prompt_width = int(ro.prompt_ids.shape[1])
        elif arm == "hf_continuous":
            requests = [ids[m.bool()].tolist() for ids, m in zip(prompts.input_ids, prompts.attention_mask)
                        for _ in range(G)]
            with torch.no_grad():
                outputs = model.generate_batch(requests, generation_config=continuous_config, progress_bar=False)
            t1 = time.perf_counter()
            lengths = [len(o.generated_tokens) for o in outputs.values()]
            tokens, rows, width = sum(lengths), len(lengths), max(lengths)
            timing = {"step_rows": None, "decode_steps": None, "prefill_s": None, "decode_s": None}
            prompt_width = int(prompts.input_ids.shape[1])
        else:
            conversations = [dataset["prompt"][b * len(texts) + i] for i in range(len(texts)) for _ in range(G)]
            prompt_ids, images, fields = trainer._tokenize_prompts(conversations)
            t0 = time.perf_counter()
            completion_ids, _ = trainer._generate_single_turn(prompt_ids, images, fields, G)
            t1 = time.perf_counter()
            tokens, rows = sum(len(c) for c in completion_ids), len(completion_ids)
            width = max(len(c) for c in completion_ids)
            timing = _hf_timing(counter.take(), t0, t1)
            prompt_width = max(len(p) for p in prompt_ids)
        if profiler is not None:
            profiler.__exit__(None, None, None)
            prof_table = _profile_table(profiler)
        records.append({"seconds": t1 - t0, "tokens": tokens, "rows": rows, "width": width,
                        "prompt_width": prompt_width, **timing})
        print(f"[bench_sampling] {arm} batch {b}: {t1 - t0:.2f} s, {tokens} tokens", file=sys.stderr, flush=True)
    return {"batches": records, "shape": shape, "profile": prof_table, "threads": torch.get_num_threads()}


def run_bandwidth(spec: dict) -> dict:
    """Best memory read bandwidth (sum of a 1 GiB float32 tensor) with the benchmark's threads."""
    import torch

    x = torch.ones(2**28)
    x.sum()
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        x.sum()
        times.append(time.perf_counter() - t0)
    return {"best": x.numel() * 4 / min(times), "median": x.numel() * 4 / statistics.median(times),
            "threads": torch.get_num_threads()}


def child_main(job_path: str, out_path: str) -> None:
    job = json.loads(Path(job_path).read_text())
    spec = job["spec"]
    _setup_child(spec)
    mode = job["mode"]
    if mode == "arm":
        result = run_arm(spec, job["arm_name"], profile=job.get("profile", False))
    elif mode == "peak":
        result = run_peak(spec)
    elif mode == "bandwidth":
        result = run_bandwidth(spec)
    else:
        raise ValueError(f"unknown mode {mode!r}")
    atomic_write_json(out_path, result, indent=1, default=str)


# --------------------------------------------------------------------------- parent


def summarise(runs: list[dict], shape: dict, peak: float, bandwidth: float) -> dict[str, Any]:
    """Medians and ranges over the measured batches; the roofline of the arm's average decode step."""
    batches = [b for r in runs for b in r["batches"][1:]]

    def stat(fn):
        return _stat([fn(b) for b in batches])

    common = {"tok_s": stat(lambda b: b["tokens"] / b["seconds"]), "seconds": stat(lambda b: b["seconds"]),
              "tokens": stat(lambda b: b["tokens"]), "peak_rss_gb": _stat([r["peak_rss_gb"] for r in runs]),
              "runs": len(runs)}
    stepped = [b for b in batches if b["step_rows"] is not None]
    if not stepped:  # continuous batching: no per-step record
        return common
    n = statistics.median(sum(b["step_rows"][1:]) / max(b["decode_steps"], 1) for b in stepped)
    L = statistics.median(b["prompt_width"] + (b["decode_steps"] + 1) / 2 for b in stepped)
    matmul_params = shape["body_params"] + shape["hidden"] * shape["vocab"]
    kv_bytes = 2 * shape["layers"] * shape["kv_heads"] * shape["head_dim"] * shape["dtype_bytes"] * n * L
    flops = 2 * matmul_params * n + 4 * n * L * shape["layers"] * shape["heads"] * shape["head_dim"]
    return {
        **common,
        "slot_use": stat(lambda b: b["tokens"] / sum(b["step_rows"])),
        "ms_per_decode_step": stat(lambda b: 1e3 * b["decode_s"] / b["decode_steps"] if b["decode_steps"] else None),
        "decode_steps": stat(lambda b: b["decode_steps"]),
        "prefill_s": stat(lambda b: b["prefill_s"]),
        "weight_s": stat(lambda b: b.get("weight_s")),
        "rows_per_decode_step": n, "context": L,
        "roofline": {"bytes": shape["weight_bytes"] + kv_bytes, "flops": flops,
                     "memory_ms": 1e3 * (shape["weight_bytes"] + kv_bytes) / bandwidth if bandwidth else None,
                     "compute_ms": 1e3 * flops / peak if peak else None},
    }


def benchmark(args) -> dict[str, Any]:
    spec = dict(WORKLOADS[args.workload], threads=args.threads, steps=args.batches)
    workdir = Path(tempfile.mkdtemp(prefix="bench_sampling-"))
    script = Path(__file__).resolve()
    report: dict[str, Any] = {
        "date": _dt.date.today().isoformat(),
        "command": " ".join([f"OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}"] * ("OMP_WAIT_POLICY" in os.environ)
                            + ["python", *sys.argv]),
        "machine": machine_info(("torch", "transformers", "trl", "accelerate", "datasets")), "threads": args.threads, "workload": args.workload, "spec": spec,
        "reps": args.reps, "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "(unset)"),
        "load_start": " ".join(f"{x:.2f}" for x in os.getloadavg()), "peak_runs": [], "bandwidth_runs": [],
    }
    t_start = time.perf_counter()
    base = {"device": spec["device"], "dtype": spec["dtype"], "threads": args.threads}

    def machine_limits(tag: str) -> None:
        report["peak_runs"].append(run_child({"mode": "peak", "spec": base}, workdir, f"peak-{tag}", script=script))
        report["bandwidth_runs"].append(run_child({"mode": "bandwidth", "spec": base}, workdir, f"bw-{tag}",
                                                  script=script))

    machine_limits("start")
    runs: dict[str, list[dict]] = {a: [] for a in args.arms}
    for rep in range(args.reps):
        for arm in args.arms:
            print(f"[bench_sampling] rep {rep + 1}/{args.reps}: {arm}", file=sys.stderr, flush=True)
            runs[arm].append(run_child({"mode": "arm", "spec": spec, "arm_name": arm}, workdir, f"{arm}-{rep}",
                                       script=script))
    if args.profile:
        print("[bench_sampling] torch.profiler on one engine batch", file=sys.stderr, flush=True)
        profiled = run_child({"mode": "arm", "spec": spec, "arm_name": "engine", "profile": True}, workdir, "profile",
                             script=script)
        report["profile"], report["profile_wall_s"] = profiled["profile"], profiled["batches"][-1]["seconds"]
    machine_limits("end")
    peak = max(p["best"] for p in report["peak_runs"])
    bandwidth = max(p["best"] for p in report["bandwidth_runs"])
    shape = next(iter(runs.values()))[0]["shape"]
    report.update(peak=peak, bandwidth=bandwidth, shape=shape, raw=runs,
                  summary={a: summarise(rs, shape, peak, bandwidth) for a, rs in runs.items()},
                  load_end=" ".join(f"{x:.2f}" for x in os.getloadavg()), wall_s=time.perf_counter() - t_start)
    return report


def _fmt(s: dict | None, spec: str = ".0f") -> str:
    return "-" if not s else f"{s['median']:{spec}} [{s['min']:{spec}}-{s['max']:{spec}}]"


def render(report: dict) -> str:
    m, spec, shape, summary = report["machine"], report["spec"], report["shape"], report["summary"]
    trl = summary.get("trl", {}).get("tok_s")
    hf = summary.get("hf_rollout", {}).get("tok_s")
    out = [f"# Generation speed: sampling engine vs generate vs TRL, {report['date']}", "",
           "Generated by `benchmarks/bench_sampling.py` (issue 14); definitions in its docstring.", "",
           "## Command", "", "```", report["command"], "```", "",
           "## Machine", "",
           f"- CPU: {m.get('cpu')} ({m.get('simd')}), {m.get('cores', m.get('logical_cpus'))} logical CPUs, {m.get('memory_gb')} GB RAM",
           f"- torch {m.get('torch')}, transformers {m.get('transformers')}, TRL {m.get('trl')}; "
           f"{report['threads']} torch threads per run, OMP_WAIT_POLICY={report['omp_wait_policy']}",
           f"- load average at start {report['load_start']}, at end {report['load_end']}",
           f"- fp32 matmul peak (2048^3, best of {len(report['peak_runs'])} measurements): "
           f"{report['peak'] / 1e9:.0f} GFLOP/s; memory read bandwidth (best): {report['bandwidth'] / 1e9:.1f} GB/s",
           f"- wall time of the benchmark: {report['wall_s'] / 60:.1f} min", "",
           "## Workload", "",
           (f"`{spec['model']}` ({spec['dtype']}, {spec['device']}; {shape['params'] / 1e6:.1f}M parameters, "
            f"{shape['weight_bytes'] / 1e6:.0f} MB of weights), B = {spec['prompts_per_step']} prompts x G = "
            f"{spec['group_size']} samples, at most {spec['max_new_tokens']} new tokens, temperature 1, top-p 1, "
            f"top-k 0; {spec['steps']} batches per run (the first left out) x {report['reps']} alternating reps."), "",
           "## Results", "",
           "Medians [min-max] over the measured batches.", "",
           "| arm | tokens/s | vs TRL | vs hf_rollout | s / batch | decode-slot use | ms / decode step | "
           "rows / decode step | prefill s | peak RSS GB |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for arm, s in summary.items():
        ratio = f"{s['tok_s']['median'] / trl['median']:.2f}x" if trl else "-"
        ratio_hf = f"{s['tok_s']['median'] / hf['median']:.2f}x" if hf else "-"
        rows = f"{s['rows_per_decode_step']:.1f}" if "rows_per_decode_step" in s else "-"
        out.append(f"| {arm} | {_fmt(s['tok_s'])} | {ratio} | {ratio_hf} | {_fmt(s['seconds'], '.2f')} | "
                   f"{_fmt(s.get('slot_use'), '.0%')} | {_fmt(s.get('ms_per_decode_step'), '.1f')} | "
                   f"{rows} | {_fmt(s.get('prefill_s'), '.2f')} | {_fmt(s.get('peak_rss_gb'), '.2f')} |")
    out += ["", "Arms: " + "; ".join(f"`{a}` = {ARM_DOC[a]}" for a in summary), "",
            "### Roofline per decode step", "",
            "| arm | rows n | context L | bytes read (MB) | at read bandwidth (ms) | GFLOP | at matmul peak (ms) | "
            "measured (ms) | measured / max(memory, compute) |",
            "|---|---|---|---|---|---|---|---|---|"]
    for arm, s in summary.items():
        if "roofline" not in s:
            continue
        r = s["roofline"]
        bound = max(r["memory_ms"] or 0, r["compute_ms"] or 0)
        measured = s["ms_per_decode_step"]["median"] if s["ms_per_decode_step"] else None
        out.append(f"| {arm} | {s['rows_per_decode_step']:.1f} | {s['context']:.0f} | {r['bytes'] / 1e6:.0f} | "
                   f"{r['memory_ms']:.1f} | {r['flops'] / 1e9:.2f} | {r['compute_ms']:.1f} | "
                   f"{measured:.1f} | {measured / bound:.2f}x |" if measured else f"| {arm} | - |")
    engine = summary.get("engine")
    if engine and trl:
        speed = engine["tok_s"]["median"] / trl["median"]
        use = engine["slot_use"]["median"]
        out += ["", "### Goals (issue 14)", "",
                f"- generation >= 2x TRL's tokens/s: {speed:.2f}x ({'met' if speed >= 2 else 'MISSED'})",
                f"- decode-slot use >= 90%: {use:.0%} ({'met' if use >= 0.9 else 'MISSED'})"]
    if report.get("profile"):
        total = report["profile"][0]["self_s"]
        engine_s = report["profile_wall_s"]
        out += ["", "### Profile of one engine batch (torch.profiler, op self time)", "",
                (f"Wall time of the profiled batch {engine_s:.2f} s (profiler overhead included); the ops' self times "
                 f"add up to {total:.2f} s, the rest is Python and dispatch between ops."), "",
                "| op | self s | share of op time | calls |", "|---|---|---|---|"]
        out += [f"| `{p['name']}` | {p['self_s']:.3f} | {p['self_s'] / total:.0%} | {p['calls']} |"
                for p in report["profile"][1:16]]
    return "\n".join(out) + "\n"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workload", choices=sorted(WORKLOADS), default="smollm2")
    parser.add_argument("--reps", type=int, default=3, help="alternating repetitions of every arm")
    parser.add_argument("--batches", type=int, default=3, help="generation batches per run (the first is a warm-up)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads in every run")
    parser.add_argument("--arms", type=lambda t: [a for a in t.split(",") if a], default=list(ARMS),
                        help=f"comma-separated subset of {','.join(ARMS)}")
    parser.add_argument("--profile", action="store_true", help="add a torch.profiler op table of one engine batch")
    parser.add_argument("--out", required=True, help="results markdown file (the raw data go to a .json beside it)")
    parser.add_argument("--render", default=None, metavar="JSON", help="only re-render the markdown from a .json")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["_child"]:  # a subprocess started by benchmark()
        child_main(*argv[1:3])
        return 0
    parser = _parser()
    args = parser.parse_args(argv)
    unknown = sorted(set(args.arms) - set(ARMS))
    if unknown:
        parser.error(f"--arms: unknown arm(s) {unknown}; known: {', '.join(ARMS)}")
    if args.batches < 2:
        parser.error("--batches must be >= 2 (the first batch is a warm-up)")
    report = json.loads(Path(args.render).read_text()) if args.render else benchmark(args)
    text = render(report)
    atomic_write_text(args.out, text)
    if not args.render:
        atomic_write_text(Path(args.out).with_suffix(".json"), json.dumps(report, indent=1, default=str))
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
