"""Rows of a table as msgspec Structs and back: one column a field, in the Struct's order.

Every actor stores some of its records as rows and reads them back into the Structs it
replies with. ``Rows`` says once how a Struct sits in a row, so that no actor writes a
positional ``tuple -> Struct`` mapper: the SELECT list, the INSERT column list, the
placeholders, the values to write and the record read back all come from the Struct's fields.

Fields are stored the way SQLite holds them natively (text, numbers, NULL), with two rules for
what it has no type for: a ``bool`` is written as 0/1 and read back as ``bool``; a field of a
container or Struct type (``dict``, ``list``, a Struct, optionally ``| None``) is stored as its
msgspec JSON text. A field the table stores differently, or not at all, is left out with
``omit`` (it takes its default) and handled in SQL by the caller.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any, Generic, TypeVar

import msgspec

T = TypeVar("T")

_Convert = Callable[[Any], Any]


class Rows(Generic[T]):
    """How records of the Struct (or dataclass) ``T`` are stored as rows of one table.

    ``renames`` maps a field to its column (or any SQL expression, in a SELECT) where the two
    differ; ``omit`` leaves fields out. Build one per Struct at import time: the reader is
    generated once, so reading a row costs what a hand-written constructor call does.
    """

    __slots__ = ("_fields", "_read_with", "_write", "columns", "of", "placeholders", "type")

    of: Callable[[Sequence[Any]], T]
    """The record in a row (its first ``len(self)`` values; more may follow)."""
    _read_with: Callable[[Sequence[Any], dict[str, Any]], T]

    def __init__(
        self,
        type_: type[T],
        *,
        renames: Mapping[str, str] | None = None,
        omit: Collection[str] = (),
    ) -> None:
        renames = renames or {}
        every = _fields_of(type_)
        unknown = (set(renames) | set(omit)) - set(every)
        if unknown:
            raise ValueError(f"{type_.__name__} has no fields {sorted(unknown)}")
        fields = [(name, hint) for name, hint in every.items() if name not in omit]
        self.type = type_
        self._fields = tuple(name for name, _ in fields)
        self.columns = ", ".join(renames.get(name, name) for name, _ in fields)
        """The SELECT list (and, without renames to expressions, the INSERT column list)."""
        self.placeholders = ", ".join("?" * len(fields))
        self.of, self._read_with = _compile_readers(type_, fields)
        writers = [_writer(hint) for _, hint in fields]
        self._write: tuple[tuple[int, _Convert], ...] = tuple(
            (i, w) for i, w in enumerate(writers) if w is not None
        )

    def __len__(self) -> int:
        return len(self._fields)

    def of_with(self, row: Sequence[Any], **omitted: Any) -> T:
        """``of(row)`` with fields the table does not hold given by the caller."""
        return self._read_with(row, omitted)

    def all(self, rows: Iterable[Sequence[Any]]) -> list[T]:
        return list(map(self.of, rows))

    def values(self, record: T) -> tuple[Any, ...]:
        """What to bind to ``placeholders`` to write ``record``."""
        values = [getattr(record, name) for name in self._fields]
        for i, write in self._write:
            values[i] = write(values[i])
        return tuple(values)

    def insert(self, table: str) -> str:
        """``INSERT INTO table (columns) VALUES (?, ...)``, to bind with ``values``."""
        return f"INSERT INTO {table} ({self.columns}) VALUES ({self.placeholders})"


def _stored_as_json(annotation: Any) -> Any | None:
    """The type to decode a JSON column into, or None for a field SQLite holds natively."""
    info = msgspec.inspect.type_info(annotation)
    if isinstance(info, msgspec.inspect.UnionType):
        rest = [t for t in info.types if not isinstance(t, msgspec.inspect.NoneType)]
        if len(rest) == 1 and _is_container(rest[0]):
            return annotation
        return None
    return annotation if _is_container(info) else None


def _is_container(info: msgspec.inspect.Type) -> bool:
    return isinstance(
        info,
        (
            msgspec.inspect.DictType,
            msgspec.inspect.ListType,
            msgspec.inspect.SetType,
            msgspec.inspect.FrozenSetType,
            msgspec.inspect.VarTupleType,
            msgspec.inspect.TupleType,
            msgspec.inspect.StructType,
        ),
    )


def _is_bool(annotation: Any) -> bool:
    info = msgspec.inspect.type_info(annotation)
    if isinstance(info, msgspec.inspect.UnionType):
        rest = [t for t in info.types if not isinstance(t, msgspec.inspect.NoneType)]
        return len(rest) == 1 and isinstance(rest[0], msgspec.inspect.BoolType)
    return isinstance(info, msgspec.inspect.BoolType)


def _fields_of(type_: type[Any]) -> dict[str, Any]:
    """The fields a Struct or dataclass is constructed with, and their types."""
    if isinstance(type_, type) and issubclass(type_, msgspec.Struct):
        names = type_.__struct_fields__
    elif dataclasses.is_dataclass(type_):
        names = tuple(f.name for f in dataclasses.fields(type_) if f.init)
    else:
        raise TypeError(f"{type_!r} is neither a Struct nor a dataclass")
    hints = typing.get_type_hints(type_)
    return {name: hints[name] for name in names}


def _compile_readers(
    type_: type[T], fields: Sequence[tuple[str, Any]]
) -> tuple[Callable[[Sequence[Any]], T], Callable[[Sequence[Any], dict[str, Any]], T]]:
    """Functions ``row -> T`` (and ``row, omitted -> T``) as fast as a hand-written
    positional constructor call.

    Measured on a photo's row: 0.3 µs, against 1.4 µs for ``msgspec.convert`` of a dict and
    1.6 µs for a generic loop over field converters.
    """
    scope: dict[str, Any] = {"_T": type_}
    arguments = []
    for i, (name, hint) in enumerate(fields):
        value = f"row[{i}]"
        json_type = _stored_as_json(hint)
        if json_type is not None:
            scope[f"_decode{i}"] = msgspec.json.Decoder(json_type).decode
            value = f"_decode{i}({value})"
        elif _is_bool(hint):
            value = f"bool({value})"
        if value != f"row[{i}]" and _is_optional(hint):
            value = f"(None if row[{i}] is None else {value})"
        arguments.append(f"{name}={value}")
    call = f"_T({', '.join(arguments)}"
    exec(f"def of(row):\n    return {call})\n", scope)
    exec(f"def of_with(row, omitted):\n    return {call}, **omitted)\n", scope)
    return scope["of"], scope["of_with"]


def _is_optional(annotation: Any) -> bool:
    info = msgspec.inspect.type_info(annotation)
    return isinstance(info, msgspec.inspect.UnionType) and any(
        isinstance(t, msgspec.inspect.NoneType) for t in info.types
    )


def _writer(annotation: Any) -> _Convert | None:
    if _stored_as_json(annotation) is not None:
        encoder = msgspec.json.Encoder()
        return lambda value: None if value is None else encoder.encode(value).decode()
    if _is_bool(annotation):
        return lambda value: None if value is None else int(value)
    return None
