"""Naive float64 references written straight from spec/apmpo.md (no log space, loops).

Independent of apmpo.core: direct formulas M_p(phi) = (mean phi^p)^(1/p),
phi = |min(r A, clip(r) A)|, so agreement checks both the log-space identity and the code.
"""

from __future__ import annotations

import math

import torch


def _clip(r, lo, hi):
    return torch.clamp(r, lo, hi)


def reference_loss(name, lp, old, adv, mask, **hp):
    lp = lp.double()
    old = old.double()
    adv = adv.double()
    rows = []
    token_terms = []
    n_tokens = 0
    for i in range(lp.shape[0]):
        idx = [t for t in range(lp.shape[1]) if mask[i, t]]
        if not idx:
            continue
        r = torch.exp(lp[i, idx] - old[i, idx])
        a = adv[i]
        n_tokens += len(idx)
        if a == 0 and name != "dapo":
            rows.append((lp[i, idx] * 0).sum())  # J_i = 0; keeps the row in the count
            continue
        if name in ("grpo", "dapo", "pmpo", "apmpo", "apmpo_group"):
            eps_low = hp.get("eps_low", 0.2)
            if name in ("apmpo", "apmpo_group"):
                mu, sd = hp["reward_mean"], hp["reward_std"]
                if name == "apmpo_group":  # each response its own group's statistics
                    mu, sd = float(mu[i]), float(sd[i])
                p = math.exp(-hp.get("gamma", 0.8) * mu)
                fss = mu / (sd + hp.get("delta", 1e-6))
                e_min, e_max = hp.get("eps_min", 0.2), hp.get("eps_max", 0.4)
                eps_high = e_min + (e_max - e_min) * math.tanh(fss)
            else:
                p = hp.get("p", 1.0)
                eps_high = hp.get("eps_high", 0.28 if name == "dapo" else 0.2)
            surr = torch.minimum(r * a, _clip(r, 1 - eps_low, 1 + eps_high) * a)
            if name == "dapo":
                token_terms.append(surr.sum())
            elif name == "grpo":
                rows.append(surr.mean())
            else:
                phi = surr.abs()
                mp = (phi.pow(p).mean()).pow(1.0 / p)
                rows.append(mp * torch.sign(a))
        elif name == "gmpo":
            c_lo, c_hi = hp.get("clip_log_low", 0.4), hp.get("clip_log_high", 0.4)
            lr = lp[i, idx] - old[i, idx]
            clipped = torch.clamp(lr, -c_lo, c_hi)
            # sign-aware pessimistic: sgn(A) * log x = min(sgn(A) lr, sgn(A) clipped)
            s = 1.0 if a > 0 else -1.0
            logx = s * torch.minimum(s * lr, s * clipped)
            rows.append(a * torch.exp(logx.mean()))
        elif name == "gspo":
            s_ratio = torch.exp((lp[i, idx] - old[i, idx]).mean())
            lo, hi = 1 - hp.get("eps_low", 3e-4), 1 + hp.get("eps_high", 4e-4)
            rows.append(torch.minimum(s_ratio * a, _clip(s_ratio, lo, hi) * a))
        else:
            raise KeyError(name)
    if name == "dapo":
        return -(torch.stack(token_terms).sum() / max(n_tokens, 1)) if token_terms else torch.zeros((), dtype=torch.float64)
    if not rows:
        return torch.zeros((), dtype=torch.float64)
    return -(torch.stack(rows).sum() / len(rows))


def reference_power_mean(x, p):
    x = x.double()
    if p == 0:
        return torch.exp(torch.log(x).mean())
    return x.pow(p).mean().pow(1.0 / p)
