"""Evaluation protocols: the decoding settings under which papers report math benchmarks.

- ``greedy`` (Qwen2.5-Math's evaluation): greedy decoding, one sample per problem;
  reports Pass@1 (= accuracy).
- ``r1`` (DeepSeek-R1, arXiv 2501.12948, and most RLVR papers since): sampling at
  temperature 0.6, top-p 0.95, ``n`` samples per problem (``--n``; default: the
  suite's ``n``, else 16); reports Pass@1 as avg@n (the mean correctness of the n
  samples), pass@k for k in {1, n} and maj@n (lighteval's avg@n, pass@k, maj@n).

A protocol fixes the settings it names; everything else (``max_new_tokens``, the
prompt, the reward) comes from the suite or the flags. Precedence, highest first: an
explicit command-line flag, the protocol, the suite's ``generation:`` section, the
defaults of :class:`apmpo.eval.harness.EvalSettings`. A flag that changes a setting
the protocol fixes is recorded in the summary (``protocol.overrides``), so a run is
never reported under a protocol it did not follow without saying so.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["PROTOCOLS", "Protocol", "protocol_settings"]

R1_DEFAULT_N = 16
"""Samples per problem of the r1 protocol when neither --n nor the suite sets n."""


@dataclass(frozen=True)
class Protocol:
    """A named set of decoding settings."""

    name: str
    """Name used by ``--protocol`` and in summaries."""
    description: str
    """One line: where it comes from and what it reports."""
    fixed: Mapping[str, Any] = field(default_factory=dict)
    """EvalSettings fields the protocol sets whatever n is."""
    sampled: bool = False
    """True: n samples, k = {1, n}, maj@n; False: one sample."""

    def settings(self, n: int | None) -> dict[str, Any]:
        """The EvalSettings values of this protocol for ``n`` samples (None: its default)."""
        values = dict(self.fixed)
        if self.sampled:
            count = R1_DEFAULT_N if n is None else n
            values.update(n=count, k=sorted({1, count}), maj_k=[count] if count > 1 else [])
        return values


PROTOCOLS: dict[str, Protocol] = {
    "greedy": Protocol(
        name="greedy",
        description="Qwen2.5-Math: greedy decoding, 1 sample per problem; Pass@1",
        fixed={"n": 1, "k": [1], "maj_k": [], "temperature": 0.0, "top_p": 1.0, "top_k": 0},
    ),
    "r1": Protocol(
        name="r1",
        description="DeepSeek-R1: temperature 0.6, top-p 0.95, n samples; Pass@1 = avg@n, pass@n, maj@n",
        fixed={"temperature": 0.6, "top_p": 0.95, "top_k": 0},
        sampled=True,
    ),
}
"""The protocols ``--protocol`` accepts."""


def protocol_settings(name: str, *, n: int | None = None) -> dict[str, Any]:
    """The settings protocol ``name`` fixes, for ``n`` samples; ValueError listing the protocols otherwise."""
    if name not in PROTOCOLS:
        raise ValueError(
            f"unknown protocol {name!r}; protocols: "
            + "; ".join(f"{p.name} ({p.description})" for p in PROTOCOLS.values())
        )
    return PROTOCOLS[name].settings(n)
