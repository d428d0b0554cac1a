"""The settings toolkit: typed settings with their constraints, one loader, one error format.

Every configuration of the package -- training (:class:`apmpo.trainer.config.TrainConfig`),
studies and their warm-up (:mod:`apmpo.study.config`) and evaluation
(:class:`apmpo.eval.harness.EvalSettings`) -- is a :class:`Settings` model (pydantic): each
field has a type, a default, its constraint next to it (``Field(gt=0)``,
``Field(ge=0, le=1)``, ...) and a docstring, which ``apmpo config show`` prints beside
the value. Common to all of them:

- unknown keys are errors (the message lists the known keys and the closest match);
- every float is finite (``nan``, ``inf`` and ``1e400`` are refused) and in its range,
  every integer in its range; an integral float (``3.0``) is accepted for an integer and
  a numeric string (YAML 1.1 reads ``1e-5`` as one) for a float;
- :func:`load_settings` reads a YAML file and applies ``key.sub=value`` overrides (the
  value read as YAML: ``3``, ``1e-5``, ``true``, ``null``, ``[0.9, 0.95]``, ``{r: 8}``);
- every problem is reported at once in one :class:`ConfigError`, each naming the file
  (or "override") and the key, the value and the allowed range.
"""

from __future__ import annotations

import copy
import difflib
import math
import os
import re
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import annotated_types
import yaml
from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.fields import FieldInfo

__all__ = [
    "ConfigError",
    "Settings",
    "apply_overrides",
    "build_settings",
    "deep_merge",
    "dump_yaml",
    "field_docs",
    "format_validation_error",
    "load_settings",
    "parse_override",
    "read_yaml",
    "set_path",
]

S = TypeVar("S", bound="Settings")


class ConfigError(ValueError):
    """A configuration problem; the message names the key (and the file) at fault."""


class Settings(BaseModel):
    """Base of every settings model: unknown keys refused, finite floats, assignments validated."""

    model_config = ConfigDict(
        extra="forbid",
        validate_assignment=True,
        allow_inf_nan=False,
        use_attribute_docstrings=True,
        protected_namespaces=(),
    )


# --------------------------------------------------------------------------- reading


def read_yaml(path: str | os.PathLike, *, what: str = "config") -> dict[str, Any]:
    """The mapping at the top of a YAML file (an empty file gives {}); errors name the file."""
    source = os.fspath(path)
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"{source}: no such {what} file")
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML ({exc})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of keys, got {type(data).__name__}")
    return data


def parse_override(item: str) -> tuple[list[str], Any]:
    """``"optim.lr=1e-5"`` -> (["optim", "lr"], 1e-5): the value read as YAML (text that is not YAML stays text)."""
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {item!r}: expected key=value, e.g. optim.lr=1e-5")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def set_path(data: dict[str, Any], path: Sequence[str], value: Any, *, item: str = "") -> None:
    """``data[path[0]][path[1]]... = value``, creating mappings on the way (a non-mapping on the way is an error)."""
    target = data
    for depth, part in enumerate(path[:-1]):
        child = target.get(part)
        if child is None:
            child = target[part] = {}
        elif isinstance(child, BaseModel):
            child = target[part] = child.model_dump()
        if not isinstance(child, dict):
            where = ".".join(path[: depth + 1])
            raise ConfigError(f"override {item or '.'.join(path)!r}: {where} is not a section or mapping")
        target = child
    target[path[-1]] = value


def apply_overrides(data: Mapping[str, Any], overrides: Iterable[str]) -> tuple[dict[str, Any], dict[str, str]]:
    """A copy of ``data`` with the overrides applied, and dotted key -> where it was set ("override 'k=v'")."""
    out = copy.deepcopy(dict(data))
    origins: dict[str, str] = {}
    for item in overrides:
        path, value = parse_override(item)
        set_path(out, path, value, item=item)
        origins[".".join(path)] = f"override {item!r}"
    return out, origins


def build_settings(
    cls: type[S], data: Mapping[str, Any] | None, *, source: str | None = None, origins: Mapping[str, str] | None = None
) -> S:
    """``cls`` validated from ``data``; every problem in one ConfigError, each line prefixed by where its key was
    set: ``origins[key]`` (e.g. "override 'optim.lr=inf'", "--top-p 2"), else ``source`` (the file)."""
    try:
        return cls.model_validate(dict(data or {}))
    except ValidationError as exc:
        raise ConfigError(format_validation_error(cls, exc, source=source, origins=origins)) from None


def load_settings(
    cls: type[S],
    path: str | os.PathLike | None = None,
    overrides: Iterable[str] = (),
    *,
    base: Mapping[str, Any] | BaseModel | None = None,
    what: str = "config",
) -> S:
    """Defaults, then ``base`` (a mapping or settings), then the YAML file ``path``, then ``overrides``; validated."""
    data: dict[str, Any] = base.model_dump() if isinstance(base, BaseModel) else copy.deepcopy(dict(base or {}))
    source = None
    if path is not None:
        source = os.fspath(path)
        data = deep_merge(data, read_yaml(path, what=what))
    data, origins = apply_overrides(data, overrides)
    return build_settings(cls, data, source=source, origins=origins)


def deep_merge(base: Mapping[str, Any], top: Mapping[str, Any], *, replace: Iterable[str] = ()) -> dict[str, Any]:
    """``top`` merged into a copy of ``base``, mapping by mapping; a mapping under a key in ``replace`` (e.g. an
    objective's ``params``) replaces the one below instead of being merged into it."""
    keep_whole = set(replace)
    out = copy.deepcopy(dict(base))
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key not in keep_whole:
            out[key] = deep_merge(out[key], value, replace=keep_whole)
        else:
            out[key] = copy.deepcopy(value)
    return out


# --------------------------------------------------------------------------- errors


def format_validation_error(
    cls: type[BaseModel], exc: ValidationError, *, source: str | None = None, origins: Mapping[str, str] | None = None
) -> str:
    """One line per problem: where it came from, the key, what is allowed and what was given."""
    lines = []
    for error in exc.errors(include_url=False):
        loc = tuple(error["loc"])
        for line in _describe(cls, loc, _dotted(loc), error):
            lines.append(f"{_origin(_key_of(line), source, origins or {})}{line}")
    lines = list(dict.fromkeys(lines))
    if len(lines) == 1:
        return lines[0]
    return "invalid configuration:\n  - " + "\n  - ".join(lines)


def _dotted(loc: tuple[Any, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _key_of(line: str) -> str:
    """The key a message line is about: the quoted key of "unknown key '...'", else the text before ": "."""
    if line.startswith("unknown key '"):
        return line.split("'")[1]
    return line.split(": ", 1)[0]


def _origin(key: str, source: str | None, origins: Mapping[str, str]) -> str:
    """Where the value at ``key`` came from: the override that set it (or set something inside it), else the file."""

    def within(inner: str, outer: str) -> bool:
        return not outer or inner == outer or inner.startswith((outer + ".", outer + "["))

    labels = [label for dotted, label in origins.items() if within(key, dotted)]
    labels = labels or [label for dotted, label in origins.items() if within(dotted, key)]
    if labels:
        return f"{', '.join(labels)}: "
    return f"{source}: " if source else ""


def _show(value: Any) -> str:
    """How a given value is quoted in a message: numbers (also numeric strings such as 'inf') bare, text in quotes."""
    if isinstance(value, str):
        try:
            float(value)
        except ValueError:
            return repr(value)
        return value
    if isinstance(value, float):
        return repr(value)
    return repr(value) if isinstance(value, (dict, list)) else str(value)


def _describe(cls: type[BaseModel], loc: tuple[Any, ...], key: str, error: Mapping[str, Any]) -> list[str]:
    kind, given = error["type"], error.get("input")
    if kind == "extra_forbidden":
        known = _known_keys(cls, loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return [f"unknown key {key!r}{hint}; known keys here: {', '.join(known)}"]
    if kind == "missing":
        return [f"{key}: required"]
    allowed = _allowed(cls, loc, error)
    if kind in ("finite_number", "greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        what = "an integer" if _strip_optional(_field_at(cls, loc)[0]) is int else "a finite number"
        return [f"{key}: must be {what}{f' {allowed}' if allowed else ''}, got {_show(given)}"]
    if kind in ("too_short", "too_long"):
        ctx = error.get("ctx") or {}
        bound = f"at least {ctx['min_length']}" if kind == "too_short" else f"at most {ctx.get('max_length')}"
        return [f"{key}: must hold {bound} item(s), got {_show(given)}"]
    if kind == "literal_error":
        return [f"{key}: must be {error['ctx']['expected']}, got {_show(given)}"]
    if kind in ("value_error", "assertion_error"):
        message = str(error["ctx"]["error"]) if "ctx" in error and "error" in error["ctx"] else error["msg"]
        return [_under(key, loc, line) for line in message.splitlines()]
    expected = _TYPE_NAMES.get(kind.split("_")[0]) or error["msg"].removeprefix("Input should be ")
    return [f"{key}: expected {expected}{f' {allowed}' if allowed else ''}, got {_show(given)}"]


def _under(key: str, loc: tuple[Any, ...], line: str) -> str:
    """A validator's message line placed under ``key``: "params.gamma: ..." from the field ``params`` of
    ``algorithm`` becomes "algorithm.params.gamma: ..."; a line naming no key gets "key: " in front."""
    if not key or line.startswith((key + ".", key + ":", key + "[")):
        return line
    last = str(loc[-1]) if loc else ""
    if last and line.startswith((last + ".", last + ":", last + "[")):
        return key[: len(key) - len(last)] + line
    if _SUBKEY.match(line):
        return f"{key}.{line}"
    return f"{key}: {line}"


_SUBKEY = re.compile(r"^[A-Za-z_]\w*[.:\[]")
"""A message line that starts by naming a key below the validated one ("params: ...", "eps_max: ...")."""


_TYPE_NAMES = {
    "int": "an integer",
    "float": "a number",
    "bool": "true or false",
    "string": "a string",
    "dict": "a mapping",
    "list": "a list",
    "tuple": "a list",
    "model": "a mapping of keys",
}


def _field_at(cls: type[BaseModel], loc: Sequence[Any]) -> tuple[Any, list[Any]]:
    """(annotation, constraint metadata) of the field at ``loc`` (best effort; (None, []) when unknown)."""
    annotation: Any = cls
    metadata: list[Any] = []
    for part in loc:
        annotation = _strip_optional(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            field = annotation.model_fields.get(str(part))
            if field is None:
                return None, []
            annotation, metadata = field.annotation, list(field.metadata)
        elif typing.get_origin(annotation) in (list, tuple, Sequence, dict, Mapping):
            args = typing.get_args(annotation)
            item = FieldInfo.from_annotation(args[-1] if args else Any)
            annotation, metadata = item.annotation, list(item.metadata)
        else:
            return None, []
    inner = _strip_optional(annotation)
    if typing.get_origin(inner) is typing.Annotated:
        info = FieldInfo.from_annotation(inner)
        annotation, metadata = info.annotation, [*metadata, *info.metadata]
    return annotation, metadata


def _strip_optional(annotation: Any) -> Any:
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
        return args[0]
    return annotation


def _known_keys(cls: type[BaseModel], loc: Sequence[Any]) -> list[str]:
    annotation = _strip_optional(_field_at(cls, loc)[0] if loc else cls)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return list(annotation.model_fields)
    return []


def _allowed(cls: type[BaseModel], loc: Sequence[Any], error: Mapping[str, Any]) -> str:
    """The field's whole allowed range as text (">= 1", "in (0, 1]"), from its constraints or the error."""
    bounds: dict[str, float] = {}
    for item in _field_at(cls, loc)[1]:
        for name in ("gt", "ge", "lt", "le"):
            value = getattr(item, name, None)
            if value is not None and isinstance(item, (annotated_types.BaseMetadata, annotated_types.GroupedMetadata)):
                bounds[name] = value
    for name in ("gt", "ge", "lt", "le"):
        if name in (error.get("ctx") or {}):
            bounds.setdefault(name, error["ctx"][name])
    return range_text(bounds)


def range_text(bounds: Mapping[str, float]) -> str:
    """``{"gt": 0, "le": 1}`` -> ``"in (0, 1]"``; one-sided -> ``"> 0"``; none -> ``""``."""
    low = ("(", bounds["gt"]) if "gt" in bounds else ("[", bounds["ge"]) if "ge" in bounds else None
    high = (")", bounds["lt"]) if "lt" in bounds else ("]", bounds["le"]) if "le" in bounds else None
    if low and high:
        return f"in {low[0]}{_num(low[1])}, {_num(high[1])}{high[0]}"
    if low:
        return f"{'>' if low[0] == '(' else '>='} {_num(low[1])}"
    if high:
        return f"{'<' if high[0] == ')' else '<='} {_num(high[1])}"
    return ""


def _num(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) and math.isfinite(value) else str(value)


# --------------------------------------------------------------------------- docs and YAML


def field_docs(cls: type[BaseModel]) -> dict[str, str]:
    """Field name -> its docstring (the string below the field in the class body)."""
    return {name: " ".join((field.description or "").split()) for name, field in cls.model_fields.items()}


def _yaml_scalar(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000, sort_keys=False).strip()
    return text[:-4].rstrip() if text.endswith("\n...") else text.removesuffix("...").strip()


def dump_yaml(settings: BaseModel, *, comments: bool = True) -> str:
    """The settings as YAML; with ``comments`` each key is preceded by its docstring, each section by its class's."""
    lines: list[str] = []

    def emit(obj: BaseModel, indent: int) -> None:
        docs = field_docs(type(obj)) if comments else {}
        plain = obj.model_dump(mode="json")
        pad = "  " * indent
        for name in type(obj).model_fields:
            value = getattr(obj, name)
            if isinstance(value, BaseModel):
                if comments and lines:
                    lines.append("")
                doc = type(value).__doc__
                if comments and doc:
                    lines.append(f"{pad}# {' '.join(doc.split())}")
                lines.append(f"{pad}{name}:")
                emit(value, indent + 1)
                continue
            if comments and docs.get(name):
                lines.append(f"{pad}# {docs[name]}")
            lines.append(f"{pad}{name}: {_yaml_scalar(plain[name])}")

    emit(settings, 0)
    return "\n".join(lines) + "\n"
