"""Vision-language models on geometry: images in prompts, Geometry3K, synthetic diagrams.

APMPO (arXiv 2605.04066) also trains a vision-language model on Geometry3K. This package
holds the image-specific pieces below sampling; the trainer and ``apmpo eval`` reach them
through one hook, the prompt encoder chosen once from what the model loader returned
(:func:`apmpo.sampling.prompt_encoder_for`).

- :func:`load_vision_model`, :func:`tiny_vlm`: Qwen2-VL / Qwen2.5-VL directories through
  ``AutoProcessor``, and a tiny random VLM with an in-process processor for tests
  (:mod:`apmpo.multimodal.processor`);
- :func:`attach_images`, :func:`open_image`: image columns of paths, bytes,
  ``{bytes, path}`` mappings (:mod:`apmpo.multimodal.images`);
- :func:`load_geometry3k`, :func:`convert_geometry3k`: Geometry3K's Inter-GPS folders and
  converted Parquet/JSONL files (:mod:`apmpo.multimodal.geometry3k`);
- :func:`make_geometry`, :func:`write_geometry_dataset`: multiple-choice geometry problems
  with matplotlib diagrams (:mod:`apmpo.multimodal.synthetic`).

The built-in tasks ``geometry`` (synthetic) and ``geometry3k`` (a local copy) are
registered in ``apmpo.tasks.BUILTIN_TASKS``.
docs/multimodal.md has the walk-through.
"""

from .geometry3k import (
    Geometry3KError,
    convert_geometry3k,
    load_geometry3k,
    make_geometry3k,
)
from .images import (
    IMAGE_CANDIDATES,
    IMAGES_KEY,
    ImageError,
    PreparedExamples,
    attach_images,
    open_image,
    resolve_image,
)
from .processor import (
    image_only_processor,
    is_processor,
    is_vision_language_config,
    load_vision_model,
    tiny_vlm,
    tiny_vlm_processor,
)
from .synthetic import (
    GEOMETRY_KINDS,
    GeometryFigure,
    make_geometry,
    write_geometry_dataset,
)

__all__ = [
    "GEOMETRY_KINDS",
    "IMAGES_KEY",
    "IMAGE_CANDIDATES",
    "Geometry3KError",
    "GeometryFigure",
    "ImageError",
    "PreparedExamples",
    "attach_images",
    "convert_geometry3k",
    "image_only_processor",
    "is_processor",
    "is_vision_language_config",
    "load_geometry3k",
    "load_vision_model",
    "make_geometry",
    "make_geometry3k",
    "open_image",
    "resolve_image",
    "tiny_vlm",
    "tiny_vlm_processor",
    "write_geometry_dataset",
]
