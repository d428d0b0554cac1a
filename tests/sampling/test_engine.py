"""The fast sampling engine against transformers' ``generate``: greedy tokens, sampled distributions, log-probs.

Statistical tests: every comparison is a chi-square test (goodness of fit against exact
probabilities, or homogeneity of two samples), with categories of small expected count
pooled. Each test function holds a family-wise false-alarm rate of ALPHA = 1e-3 by
Bonferroni (each of its m comparisons at ALPHA / m): were the two samplers identical,
at most one seed in a thousand would make it fail. Seeds are fixed, so a run is
deterministic and cannot flake; each test also shows it can fail (a slightly different
distribution is rejected).
"""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from transformers import GenerationConfig
from transformers.generation.logits_process import (
    LogitsProcessorList,
    SuppressTokensLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from apmpo.models import tiny_model
from apmpo.multimodal import tiny_vlm
from apmpo.sampling.encoder import VisionPromptEncoder
from apmpo.sampling.engine import (
    WEIGHT_LAYOUTS,
    DecodeSpec,
    NonFiniteLogitsError,
    UnsupportedModelError,
    sample_completions,
    select_tokens,
    supports_model,
)
from apmpo.sampling.settings import Sampling
from apmpo.trainer.logprobs import completion_log_probs
from tests.helpers import llama_family_model

ALPHA = 1e-3
"""Family-wise false-alarm rate of each statistical test function."""

CONTENTS = ("1+1=", "what is 12+30?", "hi", "a longer prompt: tell me about 7 * 8")


@pytest.fixture(scope="module")
def tiny():
    """A tiny random Llama whose weights are large enough for peaked, varied next-token distributions."""
    return tiny_model(seed=3, initializer_range=0.3)


def _encode(tok, contents=CONTENTS):
    texts = [tok.apply_chat_template([{"role": "user", "content": c}], add_generation_prompt=True, tokenize=False)
             for c in contents]
    enc = tok(texts, return_tensors="pt", padding=True, padding_side="left", add_special_tokens=False)
    return enc["input_ids"], enc["attention_mask"]


def _spec(stop, pad, *, suppress_token_ids=(), do_sample=True, **sampling) -> DecodeSpec:
    """A DecodeSpec of Sampling(**sampling) (do_sample=False: temperature 0, greedy) and these token ids."""
    if not do_sample:
        sampling["temperature"] = 0.0
    return DecodeSpec(Sampling(**sampling), tuple(stop), pad, tuple(suppress_token_ids))


def _settings(tok, stop=None, **kwargs) -> DecodeSpec:
    return _spec(stop if stop is not None else [tok.eos_token_id], tok.pad_token_id, **kwargs)


def _hf_generate(model, ids, mask, settings: DecodeSpec, num_samples: int, extras=None, token_inputs=None):
    """[N, T] completions from transformers' ``generate`` with exactly ``settings`` (a clean generation config)."""
    sampling = {"temperature": settings.temperature, "top_p": settings.top_p, "top_k": settings.top_k} \
        if settings.do_sample else {}
    config = GenerationConfig(max_new_tokens=settings.max_new_tokens, do_sample=settings.do_sample,
                              eos_token_id=list(settings.stop_token_ids), pad_token_id=settings.pad_token_id,
                              num_beams=1, use_cache=True, suppress_tokens=list(settings.suppress_token_ids) or None,
                              **sampling)
    inputs = dict(extras or {})
    inputs.update({k: v.repeat_interleave(num_samples, 0) for k, v in (token_inputs or {}).items()})
    saved, model.generation_config = model.generation_config, config
    try:
        with torch.no_grad():
            out = model.generate(input_ids=ids.repeat_interleave(num_samples, 0),
                                 attention_mask=mask.repeat_interleave(num_samples, 0), generation_config=config, **inputs)
    finally:
        model.generation_config = saved
    return out[:, ids.shape[1]:]


def _check_layout(c, settings):
    """Completion rows end at their first stop token or at max_new_tokens; pad after; stats consistent."""
    stops = set(settings.stop_token_ids)
    for row in range(len(c)):
        tokens = c.completion_ids[row].tolist()
        length = int(c.lengths[row])
        body = tokens[:length]
        first_stop = next((i for i, t in enumerate(body) if t in stops), None)
        if c.truncated[row]:
            assert first_stop is None and length == settings.max_new_tokens and c.finish_reasons[row] == "length"
        else:
            assert first_stop == length - 1 and c.finish_reasons[row] == "stop"
        assert all(t == settings.pad_token_id for t in tokens[length:])
        assert c.completion_mask[row].tolist() == [True] * length + [False] * (len(tokens) - length)
    assert c.stats["generated_tokens"] == int(c.lengths.sum()) == c.stats["row_steps"]  # only running rows computed


# --------------------------------------------------------------------------- greedy = generate


@pytest.mark.parametrize("layout", WEIGHT_LAYOUTS)
def test_greedy_is_token_identical_to_generate(tiny, layout):
    model, tok = tiny
    ids, mask = _encode(tok)
    # frequent tokens as extra stop tokens: rows end at different steps, so finished rows leave the cache mid-way
    probe = sample_completions(model, ids, mask, _settings(tok, max_new_tokens=24, do_sample=False), num_samples=1)
    frequent = torch.bincount(probe.completion_ids.flatten(), minlength=len(tok)).topk(3).indices.tolist()
    for settings in (_settings(tok, max_new_tokens=24, do_sample=False),
                     _settings(tok, [tok.eos_token_id, *frequent], max_new_tokens=24, do_sample=False),
                     _settings(tok, max_new_tokens=24, do_sample=False, suppress_token_ids=tuple(frequent[:2]))):
        c = sample_completions(model, ids, mask, settings, num_samples=2, weight_layout=layout)
        reference = _hf_generate(model, ids, mask, settings, 2)
        assert torch.equal(c.completion_ids, reference)
        _check_layout(c, settings)
        assert c.stats["weight_layout"] == layout
    assert c.stats["compactions"] == 0 and not set(frequent[:2]) & set(c.completion_ids.flatten().tolist())
    stopped = sample_completions(model, ids, mask, _settings(tok, [tok.eos_token_id, *frequent], max_new_tokens=24,
                                                             do_sample=False), num_samples=2)
    assert stopped.stats["compactions"] > 0 and len(set(stopped.lengths.tolist())) > 2
    assert stopped.stats["row_steps"] < len(stopped) * stopped.completion_ids.shape[1]


@pytest.mark.parametrize("family", ["qwen2", "qwen3", "llama-biases"])
@pytest.mark.parametrize("layout", ["prepacked", "shared"])
def test_greedy_is_token_identical_for_other_llama_family_models(tiny, family, layout):
    """Projection biases (Qwen2, Llama with attention/MLP bias) and per-head q/k norms (Qwen3)."""
    tok = tiny[1]
    model = llama_family_model(tok, family, initializer_range=0.3).eval()
    with torch.no_grad():  # random biases (they are initialised to 0)
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.normal_(0, 0.5)
    assert supports_model(model) is None
    ids, mask = _encode(tok)
    settings = _settings(tok, max_new_tokens=16, do_sample=False)
    c = sample_completions(model, ids, mask, settings, num_samples=2, weight_layout=layout)
    assert torch.equal(c.completion_ids, _hf_generate(model, ids, mask, settings, 2))


def test_greedy_without_onednn_and_the_newer_torch_kernels(tiny, monkeypatch):
    """No oneDNN (F.linear), torch < 2.5 / 2.4 (keys and values repeated per query head, RMSNorm unfused)."""
    import apmpo.sampling.engine as engine

    monkeypatch.setattr(engine, "_onednn_usable", lambda device, dtype: False)
    monkeypatch.setattr(engine, "_SDPA_GQA", False)
    monkeypatch.setattr(engine, "_FUSED_RMS_NORM", False)
    model, tok = tiny
    ids, mask = _encode(tok)
    settings = _settings(tok, max_new_tokens=16, do_sample=False)
    c = sample_completions(model, ids, mask, settings, num_samples=2)
    assert c.stats["weight_layout"] == "shared"
    assert torch.equal(c.completion_ids, _hf_generate(model, ids, mask, settings, 2))
    with pytest.raises(ValueError, match="weight_layout='prepacked': oneDNN's prepacked linear is not available"):
        sample_completions(model, ids, mask, settings, weight_layout="prepacked")
    with pytest.raises(ValueError, match="weight_layout must be 'auto' or one of prepacked, fused, shared"):
        sample_completions(model, ids, mask, settings, weight_layout="packed")


@pytest.mark.parametrize("arch", ["qwen2_vl", "qwen2_5_vl"])
def test_greedy_is_token_identical_to_generate_for_the_tiny_vlm(arch):
    model, processor = tiny_vlm(seed=0, arch=arch)
    with torch.no_grad():  # larger weights: varied greedy tokens instead of one repeated token
        for p in model.parameters():
            p.mul_(8)
    encoder = VisionPromptEncoder(processor)
    rows = [{"prompt": "Find x.", "images": [Image.new("RGB", (56, 84), "white")]},
            {"prompt": "Which one is larger?", "images": [Image.new("RGB", (112, 56), "red"),
                                                           Image.new("RGB", (56, 56), "blue")]},
            {"prompt": "No image here."}]
    batch = encoder.encode([encoder.render(r) for r in rows], rows)
    tok = processor.tokenizer
    settings = _spec((tok.eos_token_id,), tok.pad_token_id, max_new_tokens=10, do_sample=False,
                     suppress_token_ids=batch.suppress_tokens)
    collated = {k: torch.cat([e[k] for e in batch.extras if k in e]) for k in ("pixel_values", "image_grid_thw")}
    c = sample_completions(model, batch.input_ids, batch.attention_mask, settings, num_samples=2,
                           model_inputs=collated, token_inputs=batch.token_inputs)
    per_row = [batch.extras[i] for i in range(len(rows)) for _ in range(2)]
    row_extras = {k: torch.cat([e[k] for e in per_row if k in e]) for k in ("pixel_values", "image_grid_thw")}
    reference = _hf_generate(model, batch.input_ids, batch.attention_mask, settings, 2, row_extras, batch.token_inputs)
    assert torch.equal(c.completion_ids, reference)
    assert len({tuple(r) for r in c.completion_ids[::2].tolist()}) == 3   # the three prompts decode differently
    _check_layout(c, settings)


@pytest.mark.slow
def test_greedy_is_token_identical_to_generate_for_smollm2():
    from apmpo.models import load_model_and_tokenizer

    model, tok = load_model_and_tokenizer("smollm2-135m-instruct")
    ids, mask = _encode(tok, ("What is 48 - 0? Answer with just the number.", "What is 4 + 56?",
                              "Name three colours.", "Write a haiku about the sea."))
    settings = _settings(tok, [tok.eos_token_id, tok.convert_tokens_to_ids("<|im_end|>")], max_new_tokens=48,
                         do_sample=False)
    c = sample_completions(model, ids, mask, settings, num_samples=1, with_log_probs=True)
    assert torch.equal(c.completion_ids, _hf_generate(model, ids, mask, settings, 1))
    _check_layout(c, settings)
    reference = completion_log_probs(model, ids, mask, c.completion_ids, c.completion_mask)
    torch.testing.assert_close(c.log_probs, reference.log_probs, atol=2e-3, rtol=0)


# --------------------------------------------------------------------------- sampled distributions


def _pooled(expected: torch.Tensor, *observed: torch.Tensor, minimum: float = 5.0):
    """Keep the categories whose expected count is >= minimum, pool the others into one."""
    keep = expected >= minimum
    if bool((~keep).any()):
        return (torch.cat([expected[keep], expected[~keep].sum(0, keepdim=True)]),
                *(torch.cat([o[keep], o[~keep].sum(0, keepdim=True)]) for o in observed))
    return (expected, *observed)


def _p_value(statistic: torch.Tensor, df: int) -> float:
    """Upper tail of the chi-square distribution with ``df`` degrees of freedom."""
    return float(torch.special.gammaincc(torch.tensor(df / 2, dtype=torch.float64), statistic / 2))


def _goodness_of_fit(counts: torch.Tensor, probs: torch.Tensor) -> float:
    n = counts.sum()
    expected, observed = _pooled(probs * n, counts.double())
    return _p_value(((observed - expected) ** 2 / expected).sum(), len(expected) - 1)


def _homogeneity(a: torch.Tensor, b: torch.Tensor) -> float:
    """p-value of "a and b (counts per category) come from the same distribution"."""
    a, b = a.double(), b.double()
    total = a + b
    _, a, b = _pooled(total / 2, a, b)  # equal sample sizes: expected count of each sample = total / 2
    total = a + b
    ea, eb = total * a.sum() / total.sum(), total * b.sum() / total.sum()
    return _p_value(((a - ea) ** 2 / ea + (b - eb) ** 2 / eb).sum(), len(total) - 1)


def _reference_probs(logits: torch.Tensor, settings: DecodeSpec) -> torch.Tensor:
    """transformers' own processors in generate's order, then the softmax: the distribution generate samples."""
    processors = LogitsProcessorList()
    if settings.suppress_token_ids:
        processors.append(SuppressTokensLogitsProcessor(list(settings.suppress_token_ids)))
    if settings.temperature != 1.0:
        processors.append(TemperatureLogitsWarper(settings.temperature))
    if settings.top_k:
        processors.append(TopKLogitsWarper(settings.top_k))
    if settings.top_p < 1.0:
        processors.append(TopPLogitsWarper(settings.top_p))
    return torch.softmax(processors(None, logits[None].clone())[0].double(), -1)


SAMPLER_CASES = [
    {},
    {"temperature": 0.7},
    {"top_k": 12},
    {"top_p": 0.8},
    {"temperature": 1.3, "top_k": 40, "top_p": 0.9, "suppress_token_ids": (0, 5)},
    {"top_p": 0.999},  # the candidate set must grow past its first 64 tokens
]


def test_select_tokens_draws_exactly_the_processed_softmax():
    """Goodness of fit of 30k draws per case against transformers' processed distribution (tied logits included)."""
    V, draws = 300, 30_000
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(V, generator=g, dtype=torch.float64).mul(2.5).float()
    logits[10:14] = logits[:4]           # ties, also at the top-k / top-p boundary
    logits[-3:] = -float("inf")          # impossible tokens
    p_values = []
    for case in SAMPLER_CASES:
        settings = _spec((), 0, max_new_tokens=1, **case)
        probs = _reference_probs(logits, settings)
        torch.manual_seed(1)
        tokens = select_tokens(logits.expand(draws, V).clone(), settings, torch.rand(draws, 2, dtype=torch.float64))
        counts = torch.bincount(tokens, minlength=V)
        assert int(counts[probs == 0].sum()) == 0, case  # the support is exact
        p_values.append(_goodness_of_fit(counts, probs))
    assert min(p_values) > ALPHA / len(SAMPLER_CASES), p_values
    # the test can fail: the same draws against the distribution at temperature 1.1
    settings = _spec((), 0, max_new_tokens=1)
    torch.manual_seed(1)
    tokens = select_tokens(logits.expand(draws, V).clone(), settings, torch.rand(draws, 2, dtype=torch.float64))
    wrong = torch.softmax(logits.double() / 1.1, -1)
    assert _goodness_of_fit(torch.bincount(tokens, minlength=V), wrong) < 1e-12


ENGINE_CASES = [{"temperature": 1.0}, {"temperature": 0.7, "top_k": 12, "top_p": 0.9}]
POSITIONS = (0, 3)


def test_sampled_tokens_follow_generate_distribution(tiny):
    """Engine vs generate, 3000 samples each: token frequencies at positions 0 and 3 of two prompts, two settings."""
    model, tok = tiny
    ids, mask = _encode(tok, CONTENTS[:2])
    G, V = 3000, len(tok)
    p_values = []
    for case in ENGINE_CASES:
        settings = _settings(tok, [], max_new_tokens=max(POSITIONS) + 1, **case)
        torch.manual_seed(10)
        ours = sample_completions(model, ids, mask, settings, num_samples=G).completion_ids    # [2G, T]
        torch.manual_seed(11)
        theirs = _hf_generate(model, ids, mask, settings, G)                                    # [2G, T]
        for prompt in range(2):
            rows = slice(prompt * G, (prompt + 1) * G)
            for t in POSITIONS:
                p_values.append(_homogeneity(torch.bincount(ours[rows, t], minlength=V),
                                             torch.bincount(theirs[rows, t], minlength=V)))
    assert min(p_values) > ALPHA / len(p_values), p_values
    # the test can fail: generate at temperature 0.85 instead of 1 is told apart
    torch.manual_seed(11)
    hotter = _hf_generate(model, ids, mask, _settings(tok, [], max_new_tokens=1, temperature=0.85), G)
    torch.manual_seed(10)
    ours = sample_completions(model, ids, mask, _settings(tok, [], max_new_tokens=1), num_samples=G).completion_ids
    assert _homogeneity(torch.bincount(ours[:G, 0], minlength=V), torch.bincount(hotter[:G, 0], minlength=V)) < 1e-6


# --------------------------------------------------------------------------- log-probs, seeds, stop conditions


@pytest.mark.parametrize("temperature", [1.0, 0.6])
def test_log_probs_of_sampled_tokens_match_the_training_pass(tiny, temperature):
    model, tok = tiny
    ids, mask = _encode(tok)
    settings = _settings(tok, [tok.eos_token_id, 10, 20, 30], max_new_tokens=16, temperature=temperature, top_p=0.95)
    torch.manual_seed(4)
    c = sample_completions(model, ids, mask, settings, num_samples=4, with_log_probs=True)
    assert c.stats["compactions"] > 0   # rows left the cache at different steps
    rows_ids, rows_mask = ids.repeat_interleave(4, 0), mask.repeat_interleave(4, 0)
    reference = completion_log_probs(model, rows_ids, rows_mask, c.completion_ids, c.completion_mask,
                                     temperature=temperature)
    torch.testing.assert_close(c.log_probs, reference.log_probs, atol=1e-4, rtol=0)
    assert bool((c.log_probs[c.completion_mask] < 0).all()) and bool((c.log_probs[~c.completion_mask] == 0).all())


def test_seeded_runs_are_reproducible(tiny):
    model, tok = tiny
    ids, mask = _encode(tok)
    settings = _settings(tok, [tok.eos_token_id, 10, 20], max_new_tokens=12, temperature=0.9, top_k=30)
    runs = []
    for seed in (5, 5, 6):
        torch.manual_seed(seed)
        runs.append(sample_completions(model, ids, mask, settings, num_samples=3).completion_ids)
    assert torch.equal(runs[0], runs[1]) and not torch.equal(runs[0], runs[2])
    a = sample_completions(model, ids, mask, settings, num_samples=3, generator=torch.Generator().manual_seed(7))
    b = sample_completions(model, ids, mask, settings, num_samples=3, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a.completion_ids, b.completion_ids) and a.finish_reasons == b.finish_reasons


def test_the_global_rng_is_used_only_for_the_draws(tiny):
    """Greedy decoding and sampling with a generator leave torch's RNG untouched (resume stays bit-exact)."""
    import apmpo.sampling.engine as engine

    model, tok = tiny
    ids, mask = _encode(tok)
    engine._onednn_usable.cache_clear()  # the first call of a process probes the kernels
    state = torch.get_rng_state()
    sample_completions(model, ids, mask, _settings(tok, max_new_tokens=6, do_sample=False), num_samples=2)
    sample_completions(model, ids, mask, _settings(tok, max_new_tokens=6), num_samples=2,
                       generator=torch.Generator().manual_seed(0))
    assert torch.equal(torch.get_rng_state(), state)


def test_stop_tokens_and_token_budget(tiny):
    model, tok = tiny
    ids, mask = _encode(tok)
    torch.manual_seed(8)
    settings = _settings(tok, [tok.eos_token_id, 11, 12, 13, 14, 15], max_new_tokens=10)
    c = sample_completions(model, ids, mask, settings, num_samples=5)
    _check_layout(c, settings)
    assert set(c.finish_reasons) == {"stop", "length"} and c.prompt_index.tolist() == [i // 5 for i in range(20)]
    one = sample_completions(model, ids, mask, _settings(tok, max_new_tokens=1), num_samples=2)
    assert one.completion_ids.shape == (8, 1) and one.stats["decode_steps"] == 0
    every = list(range(len(tok)))  # any token stops: every completion is one token long, and not truncated
    c = sample_completions(model, ids, mask, _settings(tok, every, max_new_tokens=5), num_samples=2)
    assert c.lengths.tolist() == [1] * 8 and not c.truncated.any() and c.stats["decode_steps"] == 0


# --------------------------------------------------------------------------- bad inputs and unsupported models


@pytest.mark.parametrize("kwargs, message", [
    ({"stop_token_ids": (3, -1)}, "stop_token_ids must hold token ids"),
    ({"suppress_token_ids": (True,)}, "suppress_token_ids must hold token ids"),
    ({"pad_token_id": -1}, "pad_token_id must be a token id"),
    ({"stop_token_ids": (3,), "suppress_token_ids": (3,)}, r"stop tokens \[3\] are also suppressed"),
])
def test_bad_token_ids_are_refused(kwargs, message):
    kwargs = {"sampling": Sampling(max_new_tokens=4), "stop_token_ids": (2,), "pad_token_id": 0, **kwargs}
    with pytest.raises(ValueError, match=message):
        DecodeSpec(**kwargs)
    with pytest.raises(TypeError, match="DecodeSpec.sampling must be a Sampling, got dict"):
        DecodeSpec({"max_new_tokens": 4}, (2,), 0)


@pytest.mark.parametrize("field, value", [("max_new_tokens", 0), ("temperature", -0.5), ("temperature", float("nan")),
                                          ("top_p", 0.0), ("top_p", 1.5), ("top_k", -1)])
def test_sampling_ranges_are_checked_once_by_sampling(field, value):
    """The engine takes temperature, top-p, top-k and lengths from Sampling, whose constraints refuse bad values."""
    with pytest.raises(ValueError, match=field):
        Sampling(**{field: value})


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_logits_are_refused_not_sampled(bad):
    """A diverged model's logits (NaN / +inf) stop sampling with an error naming the row, as torch.multinomial does."""
    logits = torch.randn(3, 300)
    logits[1, 17] = bad
    with pytest.raises(NonFiniteLogitsError, match="row 1: the next-token logits are not finite"):
        select_tokens(logits, _spec((), 0, max_new_tokens=1), torch.rand(3, 2, dtype=torch.float64))
    assert select_tokens(torch.randn(3, 300), _spec((), 0, max_new_tokens=1),
                         torch.rand(3, 2, dtype=torch.float64)).shape == (3,)  # finite logits: sampled


def test_bad_prompts_are_refused(tiny):
    model, tok = tiny
    ids, mask = _encode(tok)
    settings = _settings(tok, max_new_tokens=4)
    right_padded = mask.flip(1)
    out_of_vocab = ids.clone()
    out_of_vocab[1, -2] = len(tok) + 5
    cases = [
        ((ids[:0], mask[:0]), {}, "no prompts given"),
        ((ids[:, :0], mask[:, :0]), {}, "the prompts have no tokens"),
        ((ids, mask[:, 1:]), {}, r"attention_mask \(4, \d+\) must have the shape of input_ids"),
        ((ids, mask * torch.tensor([1, 0, 1, 1])[:, None]), {}, r"prompt 1: no tokens"),
        ((ids, right_padded), {}, r"prompt \d: not left-padded"),
        ((out_of_vocab, mask), {}, rf"prompt 1, position {ids.shape[1] - 2}: token id {len(tok) + 5} is outside"),
        ((ids, mask), {"num_samples": 0}, "num_samples must be an integer >= 1, got 0"),
        ((ids, mask), {"token_inputs": {"mm_token_type_ids": mask[:, 1:]}}, r"token_inputs\['mm_token_type_ids'\]"),
    ]
    for (a, b), kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            sample_completions(model, a, b, settings, **kwargs)
    with pytest.raises(TypeError, match="settings must be a DecodeSpec"):
        sample_completions(model, ids, mask, {"max_new_tokens": 4})


def test_unsupported_models_are_named():
    from transformers import GPT2Config, GPT2LMHeadModel

    gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=50, bos_token_id=0,
                                      eos_token_id=0))
    assert "model_type 'gpt2' is not supported" in supports_model(gpt2)
    with pytest.raises(UnsupportedModelError, match="gpt2"):
        sample_completions(gpt2, torch.ones(1, 3, dtype=torch.long), torch.ones(1, 3, dtype=torch.long),
                           _spec((0,), 0, max_new_tokens=2))
    model, _ = tiny_model(seed=0)
    assert supports_model(model) is None
    model.model.layers[1].mlp.up_proj = torch.nn.Sequential(model.model.layers[1].mlp.up_proj)  # e.g. a LoRA wrapper
    assert "layer 1 mlp.up_proj is a Sequential, not a plain nn.Linear" in supports_model(model)


# --------------------------------------------------------------------------- devices and dtypes


@pytest.mark.parametrize("device", [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")),
])
def test_bfloat16_greedy_and_log_probs(device):
    """bf16 (the GPU setting): greedy tokens are the argmax of a full forward pass up to bf16 rounding, log-probs agree."""
    model, tok = tiny_model(seed=3, initializer_range=0.3)
    model = model.to(device=device, dtype=torch.bfloat16)
    ids, mask = (t.to(device) for t in _encode(tok))
    c = sample_completions(model, ids, mask, _settings(tok, max_new_tokens=12, do_sample=False), num_samples=2)
    assert c.completion_ids.device.type == device
    rows_ids, rows_mask = ids.repeat_interleave(2, 0), mask.repeat_interleave(2, 0)
    full_mask = torch.cat([rows_mask, c.completion_mask.long()], 1)
    with torch.no_grad():
        logits = model(input_ids=torch.cat([rows_ids, c.completion_ids], 1), attention_mask=full_mask,
                       position_ids=(full_mask.cumsum(-1) - 1).clamp(min=0)).logits.float()
    logits = logits[:, ids.shape[1] - 1 : -1]                                            # [N, T, V]
    chosen = logits.gather(-1, c.completion_ids[..., None])[..., 0]
    gap = (logits.amax(-1) - chosen)[c.completion_mask]
    assert float(gap.max()) <= 0.1, gap  # 0.1 = a few bf16 steps at these logit sizes (|logit| < 8)
    torch.manual_seed(0)
    sampled = sample_completions(model, ids, mask, _settings(tok, max_new_tokens=12, top_p=0.9), num_samples=3,
                                 with_log_probs=True)
    reference = completion_log_probs(model, ids.repeat_interleave(3, 0), mask.repeat_interleave(3, 0),
                                     sampled.completion_ids, sampled.completion_mask)
    assert sampled.log_probs.dtype == torch.float32
    torch.testing.assert_close(sampled.log_probs, reference.log_probs, atol=0.1, rtol=0.05)
