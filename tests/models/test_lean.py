"""The lean MLP / RMSNorm forward (apmpo.models.lean): same forward values, same gradients, less saved memory."""

from __future__ import annotations

import copy

import pytest
import torch

from apmpo.models import tiny_model
from apmpo.models.lean import lean_layer_count, use_lean_layers
from apmpo.multimodal import tiny_vlm
from tests.helpers import llama_family_model


def _family(tok, family: str, dtype=torch.float64):
    model = llama_family_model(tok, family, hidden_size=32, intermediate_size=48).to(dtype)
    with torch.no_grad():  # random biases and norm weights (initialised to 0 / 1)
        for name, p in model.named_parameters():
            if name.endswith("bias") or "norm" in name:
                p.normal_(0.5, 0.5)
    return model


def _grads(model, ids, **inputs):
    model.zero_grad(set_to_none=True)
    out = model(input_ids=ids, **inputs).logits
    weights = torch.linspace(-1, 1, out.shape[-1], dtype=out.dtype)
    (out * weights).sum().backward()
    return out.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _compare(model, ids, *, tol=1e-5, **inputs):
    """Logits bit-identical; each gradient within ``tol`` x its largest entry (float64 models still normalise in
    float32, as transformers' RMSNorm does, hence a float32 tolerance)."""
    lean = copy.deepcopy(model)
    count = use_lean_layers(lean)
    assert count > 0 and lean_layer_count(lean) == count
    assert use_lean_layers(lean) == count  # idempotent
    out_ref, g_ref = _grads(model, ids, **inputs)
    out, g = _grads(lean, ids, **inputs)
    assert torch.equal(out, out_ref)
    assert g.keys() == g_ref.keys()
    for name in g_ref:
        scale = float(g_ref[name].abs().max())
        assert float((g[name] - g_ref[name]).abs().max()) <= tol * scale, name
    assert list(dict(lean.state_dict())) == list(dict(model.state_dict()))
    return lean


def test_the_swiglu_gradient_is_exact_in_float64():
    from apmpo.models.lean import _SwiGLU

    torch.manual_seed(0)
    x = torch.randn(2, 3, 5, dtype=torch.float64, requires_grad=True)
    weights = [torch.randn(*shape, dtype=torch.float64, requires_grad=True)
               for shape in [(7, 5), (7,), (7, 5), (7,), (5, 7), (5,)]]
    assert torch.autograd.gradcheck(_SwiGLU.apply, (x, *weights))
    assert torch.autograd.gradcheck(_SwiGLU.apply, (x, weights[0], None, weights[2], None, weights[4], None))


@pytest.mark.parametrize("family", ["qwen2", "qwen3", "llama-biases"])
def test_lean_layers_give_the_same_logits_and_gradients_in_float64(family):
    tok = tiny_model(seed=1)[1]
    model = _family(tok, family)
    ids = torch.randint(3, len(tok), (3, 7))
    lean = _compare(model, ids)
    expected = 2 * 3 + 1 + (4 if family == "qwen3" else 0)  # MLPs, 2 norms per layer + final, q/k norms (Qwen3)
    assert lean_layer_count(lean) == expected


def test_the_tiny_llama_in_float32_and_without_gradients():
    model, tok = tiny_model(seed=3)
    ids = torch.randint(3, len(tok), (2, 9))
    _compare(model, ids)
    lean = copy.deepcopy(model)
    use_lean_layers(lean)
    with torch.no_grad():
        assert torch.equal(lean(input_ids=ids).logits, model(input_ids=ids).logits)


def test_bfloat16_gradients_agree_with_autograd_up_to_rounding():
    model, tok = tiny_model(seed=4)
    model = model.to(torch.bfloat16)
    ids = torch.randint(3, len(tok), (2, 9))
    _compare(model, ids, tol=3e-2)


def test_the_vision_language_model_text_tower():
    model, processor = tiny_vlm(seed=2)
    model = model.to(torch.float64)
    ids = torch.randint(3, 50, (2, 6))
    _compare(model, ids)


def test_frozen_weights_and_an_input_without_gradient():
    """needs_input_grad: frozen projections get no gradient, the others still match."""
    model = _family(tiny_model(seed=1)[1], "llama-biases")
    for name, p in model.named_parameters():
        if "gate_proj" in name or "input_layernorm" in name:
            p.requires_grad_(False)
    _compare(model, torch.randint(3, 40, (2, 5)))


def test_models_it_does_not_know_and_lora_projections_are_left_alone():
    from transformers import GPT2Config, GPT2LMHeadModel

    gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=50))
    assert use_lean_layers(gpt2) == 0 and lean_layer_count(gpt2) == 0
    peft = pytest.importorskip("peft")
    model, _ = tiny_model(seed=5)
    wrapped = peft.get_peft_model(model, peft.LoraConfig(r=2, target_modules=["gate_proj", "q_proj"]))
    count = use_lean_layers(wrapped)
    layers = model.config.num_hidden_layers
    assert count == 2 * layers + 1  # the norms only: every MLP has a LoRA-wrapped gate projection


def test_the_lean_layers_save_less_for_backward():
    model, tok = tiny_model(seed=6, hidden_size=64, intermediate_size=256, num_hidden_layers=2)
    ids = torch.randint(3, len(tok), (4, 16))

    def saved_bytes(m):
        params = {p.untyped_storage().data_ptr() for p in m.parameters()}
        seen: dict[int, int] = {}

        def pack(t):
            ptr = t.untyped_storage().data_ptr()
            if ptr not in params:
                seen[ptr] = t.untyped_storage().nbytes()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            m(input_ids=ids).logits.sum()
        return sum(seen.values())

    lean = copy.deepcopy(model)
    use_lean_layers(lean)
    assert saved_bytes(lean) < 0.7 * saved_bytes(model)
