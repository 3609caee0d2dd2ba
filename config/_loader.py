"""Build ``Settings`` from the shipped defaults, an optional TOML file and ``FRAMEHUB_*`` variables.

Every failure is a ``SettingsError`` whose message starts with where the bad value came from:
the variable's name (``FRAMEHUB_HTTP__PORT: ...``), ``<key> in <file>: ...`` for a TOML file, or
``<key> (default): ...`` for a value nobody overrode. Operators' scripts may match on that.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple, get_args, get_origin

import msgspec
import msgspec.toml

from config._settings import Settings

ENV_PREFIX = "FRAMEHUB_"
CONFIG_VAR = "FRAMEHUB_CONFIG"
CLIENT_VARS = frozenset({"FRAMEHUB_TOKEN"})
"""Variables of framehub's command-line clients (``run.py upload``), not hub settings."""
DEFAULT_FILE = Path(__file__).with_name("default.toml")

_TYPE_NAMES = {
    "int": "an integer",
    "float": "a number",
    "str": "a string",
    "bool": "a boolean",
    "object": "a table",
    "array": "an array",
}


class SettingsError(ValueError):
    """Invalid settings. The message names the offending key and where its value came from."""


class _Schema(NamedTuple):
    keys: Mapping[str, Any]
    """Dotted key (``"http.port"``, ``"data_dir"``) to its field type, constraints included."""
    sections: frozenset[str]


class _Layers(NamedTuple):
    doc: dict[str, Any]
    """The merged document, as nested dicts, that is converted into ``Settings``."""
    origins: dict[str, str]
    """Dotted key to the label that prefixes errors about its current value."""


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Load and validate the hub's settings; raise ``SettingsError`` if any is invalid.

    Later sources override earlier ones key by key: ``config/default.toml``; then the TOML file
    named by ``FRAMEHUB_CONFIG`` (an empty value means none); then ``FRAMEHUB_<SECTION>__<KEY>``
    and, for top-level keys, ``FRAMEHUB_<KEY>``. Variable names are case-insensitive and their
    values are converted from strings to the field's type. ``FRAMEHUB_TOKEN`` belongs to the
    command-line clients; any other ``FRAMEHUB_*`` variable is an error, so typos do not go
    unnoticed. ``environ`` defaults to ``os.environ``.
    """
    schema = _schema()
    variables = _framehub_variables(os.environ if environ is None else environ)
    layers = _Layers(doc={}, origins={})

    _merge_file(layers, schema, _read_toml(DEFAULT_FILE, "default settings"), None)
    for client_var in CLIENT_VARS:
        variables.pop(client_var, None)
    config = variables.pop(CONFIG_VAR, None)
    if config is not None and config[1]:
        path = Path(config[1]).expanduser().absolute()
        _merge_file(layers, schema, _read_toml(path, config[0]), path)
    for var, raw in variables.values():
        key, value = _from_env(schema, var, raw)
        section, _, field = key.rpartition(".")
        (layers.doc.setdefault(section, {}) if section else layers.doc)[field] = value
        layers.origins[key] = var

    try:
        return msgspec.convert(layers.doc, Settings)
    except msgspec.ValidationError as exc:
        raise SettingsError(_explain(str(exc), layers, schema)) from None


def _schema() -> _Schema:
    keys: dict[str, Any] = {}
    sections: set[str] = set()
    for field in msgspec.structs.fields(Settings):
        if isinstance(field.type, type) and issubclass(field.type, msgspec.Struct):
            sections.add(field.name)
            for sub in msgspec.structs.fields(field.type):
                keys[f"{field.name}.{sub.name}"] = sub.type
        else:
            keys[field.name] = field.type
    return _Schema(keys, frozenset(sections))


def _framehub_variables(environ: Mapping[str, str]) -> dict[str, tuple[str, str]]:
    """``FRAMEHUB_*`` variables keyed by upper-cased name, each as ``(name as given, value)``."""
    found: dict[str, tuple[str, str]] = {}
    for var, raw in sorted(environ.items()):
        name = var.upper()
        if not name.startswith(ENV_PREFIX):
            continue
        if name in found:
            raise SettingsError(
                f"{found[name][0]} and {var}: the same setting given twice"
                " (names are case-insensitive)"
            )
        found[name] = (var, raw)
    return found


def _read_toml(path: Path, via: str) -> dict[str, Any]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SettingsError(f"{via}: cannot read {path}: {exc.strerror or exc}") from None
    try:
        return msgspec.toml.decode(data, type=dict[str, Any])
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise SettingsError(f"{via}: {path} is not valid TOML: {exc}") from None


def _merge_file(
    layers: _Layers, schema: _Schema, table: Mapping[str, Any], path: Path | None
) -> None:
    """Overlay a parsed TOML file; unknown keys are kept for msgspec to report with their path."""

    def where(key: str) -> str:
        return f"{key} (default)" if path is None else f"{key} in {path}"

    for name, value in table.items():
        layers.origins[name] = where(name)
        if name not in schema.sections:
            layers.doc[name] = value
            continue
        if not isinstance(value, dict):
            raise SettingsError(f"{where(name)}: expected a table, got {value!r}")
        section = layers.doc.setdefault(name, {})
        for key, item in value.items():
            section[key] = item
            layers.origins[f"{name}.{key}"] = where(f"{name}.{key}")


def _from_env(schema: _Schema, var: str, raw: str) -> tuple[str, Any]:
    """The dotted key ``var`` sets and ``raw`` converted (and range-checked) to that key's type."""
    name = var[len(ENV_PREFIX) :].lower()
    section, nested, field = name.partition("__")
    key = f"{section}.{field}" if nested else name
    if key not in schema.keys:
        raise SettingsError(f"{var}: unknown setting {key}{_env_hint(schema, name)}")
    try:
        return key, msgspec.convert(raw, schema.keys[key], strict=False)
    except msgspec.ValidationError as exc:
        raise SettingsError(f"{var}: {_describe(str(exc), schema.keys[key], raw)}") from None


def _env_hint(schema: _Schema, name: str) -> str:
    if name in schema.sections:
        return f" ({name} is a section: use {ENV_PREFIX}{name.upper()}__<KEY>)"
    for section in sorted(schema.sections):
        field = name.removeprefix(f"{section}_")
        if field != name and f"{section}.{field}" in schema.keys:
            suggestion = f"{ENV_PREFIX}{section}__{field}".upper()
            return f" (did you mean {suggestion}? sections end with a double underscore)"
    return ""


def _explain(message: str, layers: _Layers, schema: _Schema) -> str:
    """Turn a msgspec ``ValidationError`` message into ``"<where>: <problem>"``."""
    match = re.fullmatch(r"(.*?)(?: - at `\$(.*)`)?", message, flags=re.DOTALL)
    problem, path = (match[1], match[2] or "") if match else (message, "")
    parts = [part for part in path.split(".") if part]

    unknown = re.fullmatch(r"Object contains unknown field `(.*)`", problem)
    if unknown:
        key = ".".join([*parts, unknown[1]])
        return f"{layers.origins.get(key, key)}: unknown setting"

    key = ".".join(parts)
    field, sep, detail = problem.partition(": ")
    nested = f"{key}.{field}" if key else field
    if sep and nested in schema.keys:
        return f"{layers.origins.get(nested, nested)}: {detail}"

    value = _lookup(layers.doc, parts)
    return f"{layers.origins.get(key, key)}: {_describe(problem, schema.keys.get(key), value)}"


def _lookup(doc: Mapping[str, Any], parts: Sequence[str]) -> Any:
    value: Any = doc
    for part in parts:
        value = value[part]
    return value


def _describe(problem: str, field_type: Any, value: Any) -> str:
    """Reword msgspec's ``problem`` with ``value`` for the field of ``field_type`` (None if
    unknown) in operators' terms: the expected type, range or choices."""
    wrong_type = re.fullmatch(r"Expected `(\w+)`, got `\w+`", problem)
    if wrong_type:
        return f"expected {_TYPE_NAMES.get(wrong_type[1], wrong_type[1])}, got {value!r}"
    base, metas = _unwrap(field_type)
    if get_origin(base) is Literal:
        return f"must be {_either(repr(choice) for choice in get_args(base))}, got {value!r}"
    for meta in metas:
        if meta.min_length:
            return f"must not be empty, got {value!r}"
        if meta.ge is not None and meta.le is not None:
            return f"must be between {meta.ge} and {meta.le}, got {value!r}"
        if meta.gt is not None:
            return f"must be greater than {meta.gt}, got {value!r}"
        if meta.ge is not None:
            return f"must be at least {meta.ge}, got {value!r}"
    return f"{problem[:1].lower()}{problem[1:]}, got {value!r}"


def _unwrap(field_type: Any) -> tuple[Any, list[msgspec.Meta]]:
    if get_origin(field_type) is not Annotated:
        return field_type, []
    base, *extras = get_args(field_type)
    return base, [extra for extra in extras if isinstance(extra, msgspec.Meta)]


def _either(choices: Iterable[str]) -> str:
    *init, last = choices
    return f"{', '.join(init)} or {last}" if init else last
