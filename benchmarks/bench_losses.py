"""Forward+backward time and peak memory of every objective, as ratios to GRPO.

Not a test: run by hand, paste the printed table into docs/benchmarks.md.

    .venv/bin/python benchmarks/bench_losses.py --n 512 --t 4096 --repeats 5

Each repetition runs every loss once, in a rotating order (so drift on a shared
machine hits all losses alike). Time: median (min-max) wall seconds of
policy_loss(...) + backward. Peak memory: the rise of the process's peak resident set
(VmHWM, reset through /proc/self/clear_refs before each call; glibc's mmap threshold
is fixed at 1 MiB so freed tensors return to the OS) above the resident set
just before the call, i.e. the memory the loss itself allocates on top of its inputs.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time

import torch

import apmpo
from apmpo.provenance import machine_info

HYPERPARAMETERS = {
    "apmpo": dict(reward_mean=0.4, reward_std=0.45),
    "pmpo": dict(p=0.7),
}


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _fixed_mmap_threshold() -> None:
    """Serve large blocks by mmap so freed tensors leave the resident set (glibc raises the
    threshold dynamically otherwise, and a freed block would hide the next call's peak)."""
    import ctypes

    M_MMAP_THRESHOLD = -3
    ctypes.CDLL("libc.so.6").mallopt(M_MMAP_THRESHOLD, 1 << 20)


def make_inputs(n: int, t: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(t // 4, t + 1, (n,), generator=g)
    mask = torch.arange(t)[None, :] < lengths[:, None]                     # [N, T]
    old = -torch.rand(n, t, generator=g) * 4                               # [N, T]
    logp = old + 0.1 * torch.randn(n, t, generator=g)                      # [N, T]
    adv = torch.randn(n, generator=g)                                      # [N]
    return logp, old, adv, mask


def run_once(name: str, logp, old, adv, mask) -> tuple[float, float]:
    x = logp.clone().requires_grad_(True)
    gc.collect()
    before = _rss_kib("VmRSS")
    _reset_peak()
    start = time.perf_counter()
    loss, _ = apmpo.policy_loss(name, x, old, adv, mask, **HYPERPARAMETERS.get(name, {}))
    loss.backward()
    elapsed = time.perf_counter() - start
    peak = _rss_kib("VmHWM") - before
    del x, loss
    return elapsed, peak / 1024.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=512, help="responses")
    ap.add_argument("--t", type=int, default=4096, help="tokens per response (padded length)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    _fixed_mmap_threshold()
    names = ["grpo"] + [n for n in sorted(apmpo.LOSSES) if n != "grpo"]
    inputs = make_inputs(args.n, args.t)
    for name in names:  # warm-up
        run_once(name, *inputs)
    times: dict[str, list[float]] = {n: [] for n in names}
    mems: dict[str, list[float]] = {n: [] for n in names}
    for rep in range(args.repeats):
        order = names[rep % len(names):] + names[: rep % len(names)]
        for name in order:
            t, m = run_once(name, *inputs)
            times[name].append(t)
            mems[name].append(m)
    base_t = statistics.median(times["grpo"])
    base_m = statistics.median(mems["grpo"])
    print(f"# policy_loss forward+backward, N={args.n} x T={args.t} (float32, CPU)")
    machine = machine_info()
    print(f"# machine: {machine['cpu']}, torch {machine['torch']}, threads {torch.get_num_threads()}, repeats {args.repeats}")
    print("| loss | time s, median (min-max) | time / GRPO | peak extra MiB, median | memory / GRPO |")
    print("|---|---|---|---|---|")
    for name in names:
        tm = statistics.median(times[name])
        mm = statistics.median(mems[name])
        print(
            f"| {name} | {tm:.3f} ({min(times[name]):.3f}-{max(times[name]):.3f}) | {tm / base_t:.2f}x "
            f"| {mm:.0f} | {mm / base_m:.2f}x |"
        )


if __name__ == "__main__":
    main()
