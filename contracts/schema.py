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
from collections.abc import Callable
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


Parser = Callable[[Any, str], Any]
_PARSERS: dict[Any, Parser] = {}


def _parser(tp: Any) -> Parser:
    """A checking function for annotation ``tp``, built once per annotation and cached."""
    try:
        return _PARSERS[tp]
    except KeyError:
        parser = _PARSERS[tp] = _build(tp)
        return parser


def _build(tp: Any) -> Parser:
    origin = get_origin(tp)
    if origin is Annotated:
        base, *constraints = get_args(tp)
        inner = _parser(base)
        checks = tuple(constraints)

        def annotated(value: Any, path: str) -> Any:
            parsed = inner(value, path)
            _check_constraints(parsed, checks, path)
            return parsed

        return annotated
    if origin is Literal:
        choices = get_args(tp)

        def literal(value: Any, path: str) -> Any:
            for choice in choices:
                if type(value) is type(choice) and value == choice:
                    return value
            raise SchemaError(f"{_where(path)}: {_describe(value)} is not one of {list(choices)}")

        return literal
    if origin in (Union, types.UnionType):
        options = get_args(tp)
        inner_types = [o for o in options if o is not type(None)]
        if len(inner_types) != 1 or type(None) not in options:
            raise TypeError(f"unsupported union {tp}")
        inner = _parser(inner_types[0])

        def optional(value: Any, path: str) -> Any:
            return None if value is None else inner(value, path)

        return optional
    if origin is tuple:
        item = _parser(get_args(tp)[0])

        def array(value: Any, path: str) -> Any:
            if type(value) is not list:
                raise SchemaError(f"{_where(path)}: expected array, got {type(value).__name__}")
            return tuple(item(v, f"{path}[{i}]") for i, v in enumerate(value))

        return array
    if origin is dict:
        key_type, value_type = get_args(tp)
        parse_key, parse_value = _parser(key_type), _parser(value_type)

        def mapping(value: Any, path: str) -> Any:
            if type(value) is not dict:
                raise SchemaError(f"{_where(path)}: expected map, got {type(value).__name__}")
            return {parse_key(k, f"{path}.<key>"): parse_value(v, f"{path}.{k}") for k, v in value.items()}

        return mapping
    if isinstance(tp, type) and issubclass(tp, Record):
        return lambda value, path: tp.from_obj(value, path=path)
    if tp is float:

        def number(value: Any, path: str) -> Any:
            if type(value) is int:
                value = float(value)
            if type(value) is not float:
                raise SchemaError(f"{_where(path)}: expected number, got {type(value).__name__}")
            if not math.isfinite(value):
                raise SchemaError(f"{_where(path)}: {value} is not finite")
            return value

        return number
    if tp in (int, str, bytes, bool):

        def exact(value: Any, path: str) -> Any:
            if type(value) is not tp:
                raise SchemaError(f"{_where(path)}: expected {tp.__name__}, got {type(value).__name__}")
            return value

        return exact
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

    _table: ClassVar[tuple[tuple[str, bool, Parser], ...]]

    @classmethod
    def _fields_table(cls) -> tuple[tuple[str, bool, Parser], ...]:
        """(name, required, parser) per field, built once per class."""
        if "_table" not in cls.__dict__:
            hints = typing.get_type_hints(cls, include_extras=True)
            cls._table = tuple(
                (
                    f.name,
                    f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING,
                    _parser(hints[f.name]),
                )
                for f in dataclasses.fields(cls)  # type: ignore[arg-type]
            )
        return cls._table

    @classmethod
    def _field_types(cls) -> dict[str, Any]:
        hints = typing.get_type_hints(cls, include_extras=True)
        return {f.name: hints[f.name] for f in dataclasses.fields(cls)}  # type: ignore[arg-type]

    @classmethod
    def from_obj(cls, obj: Any, *, path: str = "") -> Self:
        """Validate plain data (a decoded CBOR map) into this record, or raise SchemaError."""
        if type(obj) is not dict:
            raise SchemaError(f"{_where(path)}: expected map, got {type(obj).__name__}")
        table = cls._fields_table()
        if len(obj) > len(table) or not obj.keys() <= {name for name, _, _ in table}:
            unknown = sorted(set(obj) - {name for name, _, _ in table})
            raise SchemaError(f"{_where(path)}: unknown field {unknown[0]!r}")
        values: dict[str, Any] = {}
        for name, required, parse in table:
            if name not in obj:
                if required:
                    raise SchemaError(f"{path + '.' if path else ''}{name}: required field missing")
                continue
            values[name] = parse(obj[name], f"{path}.{name}" if path else name)
        return cls(**values)

    def to_obj(self) -> dict[str, Any]:
        """Plain data with every field, ready for canonical CBOR."""
        return {f.name: _dump(getattr(self, f.name)) for f in dataclasses.fields(self)}  # type: ignore[arg-type]
