"""Model and tokenizer loading: local HF directories, GGUF files, the embedded SmolLM2, tiny models.

See :func:`load_model_and_tokenizer` for the accepted model references.
"""

from apmpo.models.embedded import (
    EMBEDDED_MODELS,
    cache_root,
    embedded_model_dir,
    ensure_embedded_model,
)
from apmpo.models.gguf import convert_gguf, load_gguf
from apmpo.models.lean import lean_layer_count, use_lean_layers
from apmpo.models.loading import (
    DTYPES,
    LoraSettings,
    load_model_and_tokenizer,
    parse_dtype,
)
from apmpo.models.tiny import tiny_config, tiny_model, tiny_tokenizer

__all__ = [
    "DTYPES",
    "EMBEDDED_MODELS",
    "LoraSettings",
    "cache_root",
    "convert_gguf",
    "embedded_model_dir",
    "ensure_embedded_model",
    "load_gguf",
    "lean_layer_count",
    "load_model_and_tokenizer",
    "parse_dtype",
    "tiny_config",
    "tiny_model",
    "tiny_tokenizer",
    "use_lean_layers",
]
