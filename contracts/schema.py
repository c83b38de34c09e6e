"""A small strict schema layer: frozen dataclasses whose annotations say what a CBOR map must hold.

``Record.from_obj`` checks required fields, exact types (``bool`` is never an ``int``), ranges, sizes,
patterns and refuses unknown fields, naming the path of the first bad field. ``to_obj`` gives back
plain data for canonical CBOR. Fields with a default are optional in input; ``None`` means absent.
"""
from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal, Self, Union, get_args, get_origin

from trustmesh.contracts.errors import SchemaError

__all__ = ["Len", "Match", "Range", "Record", "SchemaError"]


@dataclass(frozen=True)
class Len:
    """Bounds on the length of a text, bytes, array or map."""

    min: int = 0
    max: int = 1 << 20


@dataclass(frozen=True)
class Range:
    """Inclusive bounds on a number (``None`` = unbounded)."""

    min: float | None = None
    max: float | None = None


@dataclass(frozen=True)
class Match:
    """A text must match this regular expression completely."""

    pattern: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "_regex", re.compile(self.pattern))

    def ok(self, value: str) -> bool:
        return self._regex.fullmatch(value) is not None  # type: ignore[attr-defined]


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _where(path: str) -> str:
    return path or "payload"


def _check_constraints(value: Any, constraints: tuple[Any, ...], path: str) -> None:
    for c in constraints:
        if isinstance(c, Len):
            if not c.min <= len(value) <= c.max:
                raise SchemaError(f"{_where(path)}: length {len(value)} outside [{c.min}, {c.max}]")
        elif isinstance(c, Range):
            if (c.min is not None and value < c.min) or (c.max is not None and value > c.max):
                raise SchemaError(f"{_where(path)}: {_describe(value)} outside [{c.min}, {c.max}]")
        elif isinstance(c, Match):
            if not c.ok(value):
                raise SchemaError(f"{_where(path)}: {_describe(value)} does not match {c.pattern}")


def _parse(tp: Any, value: Any, path: str) -> Any:
    origin = get_origin(tp)
    if origin is Annotated:
        base, *constraints = get_args(tp)
        parsed = _parse(base, value, path)
        _check_constraints(parsed, tuple(constraints), path)
        return parsed
    if origin is Literal:
        for choice in get_args(tp):
            if type(value) is type(choice) and value == choice:
                return value
        raise SchemaError(f"{_where(path)}: {_describe(value)} is not one of {list(get_args(tp))}")
    if origin in (Union, types.UnionType):
        options = get_args(tp)
        if value is None and type(None) in options:
            return None
        inner = [o for o in options if o is not type(None)]
        if len(inner) != 1:
            raise TypeError(f"unsupported union {tp}")
        return _parse(inner[0], value, path)
    if origin is tuple:
        item_type = get_args(tp)[0]
        if type(value) is not list:
            raise SchemaError(f"{_where(path)}: expected array, got {type(value).__name__}")
        return tuple(_parse(item_type, item, f"{path}[{i}]") for i, item in enumerate(value))
    if origin is dict:
        key_type, value_type = get_args(tp)
        if type(value) is not dict:
            raise SchemaError(f"{_where(path)}: expected map, got {type(value).__name__}")
        return {
            _parse(key_type, k, f"{path}.<key>"): _parse(value_type, v, f"{path}.{k}")
            for k, v in value.items()
        }
    if isinstance(tp, type) and issubclass(tp, Record):
        return tp.from_obj(value, path=path)
    if tp is float:
        if type(value) is int:
            value = float(value)
        if type(value) is not float:
            raise SchemaError(f"{_where(path)}: expected number, got {type(value).__name__}")
        if not math.isfinite(value):
            raise SchemaError(f"{_where(path)}: {value} is not finite")
        return value
    if tp in (int, str, bytes, bool):
        if type(value) is not tp:
            raise SchemaError(f"{_where(path)}: expected {tp.__name__}, got {type(value).__name__}")
        return value
    raise TypeError(f"unsupported schema type {tp!r}")


def _dump(value: Any) -> Any:
    if isinstance(value, Record):
        return value.to_obj()
    if isinstance(value, tuple):
        return [_dump(v) for v in value]
    if isinstance(value, dict):
        return {k: _dump(v) for k, v in value.items()}
    return value


class Record:
    """Base of every payload and state record; subclasses are frozen keyword-only dataclasses."""

    _hints: ClassVar[dict[str, Any]]

    @classmethod
    def _field_types(cls) -> dict[str, Any]:
        if "_hints" not in cls.__dict__:
            hints = typing.get_type_hints(cls, include_extras=True)
            cls._hints = {f.name: hints[f.name] for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        return cls._hints

    @classmethod
    def from_obj(cls, obj: Any, *, path: str = "") -> Self:
        """Validate plain data (a decoded CBOR map) into this record, or raise SchemaError."""
        if type(obj) is not dict:
            raise SchemaError(f"{_where(path)}: expected map, got {type(obj).__name__}")
        field_types = cls._field_types()
        unknown = sorted(set(obj) - set(field_types))
        if unknown:
            raise SchemaError(f"{_where(path)}: unknown field {unknown[0]!r}")
        values: dict[str, Any] = {}
        for field in dataclasses.fields(cls):  # type: ignore[arg-type]
            sub = f"{path}.{field.name}" if path else field.name
            if field.name not in obj:
                has_default = field.default is not dataclasses.MISSING or field.default_factory is not dataclasses.MISSING
                if not has_default:
                    raise SchemaError(f"{sub}: required field missing")
                continue
            values[field.name] = _parse(field_types[field.name], obj[field.name], sub)
        return cls(**values)

    def to_obj(self) -> dict[str, Any]:
        """Plain data with every field, ready for canonical CBOR."""
        return {f.name: _dump(getattr(self, f.name)) for f in dataclasses.fields(self)}  # type: ignore[arg-type]
