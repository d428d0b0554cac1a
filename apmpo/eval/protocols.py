"""Evaluation protocols: the decoding settings under which papers report math benchmarks.

- ``greedy`` (Qwen2.5-Math's evaluation): greedy decoding, one sample per problem;
  reports Pass@1 (= accuracy).
- ``r1`` (DeepSeek-R1, arXiv 2501.12948, and most RLVR papers since): sampling at
  temperature 0.6, top-p 0.95, ``n`` samples per problem (``--n``; default: the
  suite's ``n``, else 16); reports Pass@1 as avg@n (the mean correctness of the n
  samples), pass@k for k in {1, n} and maj@n (lighteval's avg@n, pass@k, maj@n).

A protocol is a preset of :class:`apmpo.eval.settings.EvalSettings` fields: it fixes
the settings it names; everything else (``max_new_tokens``, the prompt, the reward)
comes from the suite or the flags. ``apmpo eval`` layers the values, highest first: an
explicit command-line flag, the protocol, the suite's ``generation:`` section, the
defaults of ``EvalSettings``, and validates them together with the settings toolkit
(:func:`apmpo.settings.build_settings`), so a value a protocol sets is checked like any
other and a problem names ``--protocol NAME`` as where it came from. A flag that
changes a setting the protocol fixes is recorded in the summary
(``protocol.overrides``), so a run is never reported under a protocol it did not follow
without saying so.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import ConfigDict, Field, field_validator, model_validator

from apmpo.eval.settings import EvalSettings
from apmpo.settings import Settings

__all__ = ["PROTOCOLS", "R1_DEFAULT_N", "Protocol", "protocol_settings"]

R1_DEFAULT_N = 16
"""Samples per problem of the r1 protocol when neither --n nor the suite sets n."""


class Protocol(Settings):
    """A named preset of evaluation settings (fields of EvalSettings), checked when it is declared."""

    model_config = ConfigDict(frozen=True)

    name: str
    """Name used by ``--protocol`` and in summaries."""
    description: str
    """One line: where it comes from and what it reports."""
    fixed: dict[str, Any] = {}
    """EvalSettings fields the protocol sets whatever n is."""
    sampled: bool = False
    """True: n samples, k = {1, n}, maj@n; False: the samples ``fixed`` says (one)."""
    default_n: Annotated[int, Field(ge=1)] = R1_DEFAULT_N
    """Samples per problem of a sampled protocol when neither the flags nor the suite set n."""

    @field_validator("fixed")
    @classmethod
    def _setting_names(cls, fixed: dict[str, Any]) -> dict[str, Any]:
        unknown = [name for name in fixed if name not in EvalSettings.model_fields]
        if unknown:
            raise ValueError(f"unknown evaluation setting(s) {', '.join(unknown)}")
        return fixed

    @model_validator(mode="after")
    def _valid_settings(self) -> Protocol:
        EvalSettings.model_validate(self.settings(None))  # a preset that does not validate is a bug here
        return self

    def settings(self, n: Any = None) -> dict[str, Any]:
        """The EvalSettings values of this protocol for ``n`` samples (None: its default).

        ``n`` is passed through as given (e.g. a suite's ``n``) so that validation
        reports a bad one; k and maj@k follow it only when it is a positive integer.
        """
        values = dict(self.fixed)
        if self.sampled:
            count = self.default_n if n is None else n
            values["n"] = count
            if isinstance(count, int) and not isinstance(count, bool) and count >= 1:
                values.update(k=sorted({1, count}), maj_k=[count] if count > 1 else [])
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


def protocol_settings(name: str, *, n: Any = None) -> dict[str, Any]:
    """The settings protocol ``name`` fixes, for ``n`` samples; ValueError listing the protocols otherwise."""
    if name not in PROTOCOLS:
        raise ValueError(
            f"unknown protocol {name!r}; protocols: "
            + "; ".join(f"{p.name} ({p.description})" for p in PROTOCOLS.values())
        )
    return PROTOCOLS[name].settings(n)
