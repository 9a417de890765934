"""Generic, typed parsing of a YAML mapping into a dataclass section: unknown keys are rejected, and every
error names its field and what it must be (``training.epochs must be an integer, got 'ten'``)."""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from typing import Any

from bench.errors import UserError


def number(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        return text


def _describe(tp: Any) -> str:
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}
    if tp in names:
        return names[tp]
    return "a list" if typing.get_origin(tp) is tuple else "a mapping"


def convert(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        errors: dict[Any, UserError] = {}
        for option in options:
            if option is type(None):
                continue
            try:
                return convert(value, option, where)
            except UserError as exc:
                errors[option] = exc
        # Say what is wrong with the form the user wrote: a mapping for a section, a list for a list.
        for option, error in errors.items():
            if (isinstance(value, dict) and dataclasses.is_dataclass(option)) or (
                isinstance(value, list) and typing.get_origin(option) is tuple
            ):
                raise error
        raise next(iter(errors.values()))
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
            value = number(value)
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    elif origin is tuple:
        (item,) = typing.get_args(tp)[:1]
        if isinstance(value, list):
            return tuple(convert(v, item, f"{where}[{i}]") for i, v in enumerate(value))
    elif origin in (Mapping, dict) or tp is Mapping:
        if isinstance(value, dict):
            return dict(value)
    elif dataclasses.is_dataclass(tp):
        if isinstance(value, dict):
            return section(tp, value, where)
    else:  # pragma: no cover - a schema type this parser does not know
        raise TypeError(f"unsupported schema type {tp!r} at {where}")
    raise UserError(f"{where} must be {_describe(tp)}, got {value!r}")


def section(cls: Any, raw: Any, where: str) -> Any:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise UserError(f"{where} must be a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    known = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in raw if k not in known]
    if unknown:
        raise UserError(f"{where}.{unknown[0]} is not a known key; {where} takes: {', '.join(known)}")
    required = [
        f.name
        for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING and f.name not in raw
    ]
    if required:
        raise UserError(f"{where}.{required[0]} is required")
    return cls(**{k: convert(v, hints[k], f"{where}.{k}") for k, v in raw.items()})
