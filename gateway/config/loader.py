"""Reads `gateway.yaml` into the typed model: YAML, `${NAME}` expansion, conversion and every error at once.

Owns the error types and the key-path format. The rules themselves live in the model's markers
(`model.py`, `constraints.py`) and in `checks.py`; nothing here is specific to one config class.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType, UnionType
from typing import Any, Final, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

from gateway.config.checks import Finding, KeyPath, check_config
from gateway.config.constraints import Duration, MinItems, Money, Pattern, Range, split_markers
from gateway.config.model import GatewayConfig
from gateway.duration import DURATION_PATTERN, format_duration, parse_duration
from gateway.money import InvalidMoney, format_money, parse_money
from gateway.secret import Secret

_IDENTIFIER: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DURATION: Final = re.compile(DURATION_PATTERN)
_BARE_NUMBER: Final = re.compile(r"[-+]?[0-9]+(?:\.[0-9]+)?")
_REFERENCE: Final = re.compile(
    r"\$(?P<escape>\$\{)"
    r"|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}"
    r"|(?P<malformed>\$\{)"
)
_MERGE_TAG: Final = "tag:yaml.org,2002:merge"
_INVALID: Final = object()  # a value that failed conversion; its problems are already recorded
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with the configuration: where (a key path, empty for the whole file) and what."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class ConfigError(Exception):
    """The configuration cannot be used; `problems` lists every reason found, not just the first."""

    def __init__(self, problems: Sequence[Problem], *, source: str = "gateway.yaml") -> None:
        self.problems = tuple(problems)
        self.source = source
        count = len(self.problems)
        lines = [f"{source}: {count} problem{'' if count == 1 else 's'}"]
        lines.extend(f"  {problem}" for problem in self.problems)
        super().__init__("\n".join(lines))


def load_config(path: str | Path, environ: Mapping[str, str] | None = None) -> GatewayConfig:
    """Read and check the file at `path`; `environ` defaults to the process environment."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as error:
        reason = error.strerror or str(error)
        raise ConfigError([Problem("", f"cannot read {file}: {reason}")], source=str(file)) from None
    except UnicodeDecodeError as error:
        message = f"{file} is not UTF-8 text ({error.reason} at byte {error.start})"
        raise ConfigError([Problem("", message)], source=str(file)) from None
    return parse_config(text, os.environ if environ is None else environ, source=str(file))


def parse_config(text: str, environ: Mapping[str, str], *, source: str = "gateway.yaml") -> GatewayConfig:
    """Parse YAML `text` into a checked `GatewayConfig`, or raise `ConfigError` with every problem."""
    try:
        data, findings = _read_yaml(text)
    except (yaml.YAMLError, ValueError) as error:  # ValueError: explicit tags such as `!!int x`
        raise ConfigError([Problem("", _yaml_error_message(error))], source=source) from None
    converter = _Converter(environ)
    config = converter.convert_root(data, GatewayConfig)
    findings.extend(converter.findings)
    names = _declared_names(data)
    if names is not None:
        supplier_names, product_names = names
        findings.extend(check_config(config, supplier_names=supplier_names, product_names=product_names))
    if findings:
        problems = [Problem(format_key_path(path), message) for path, message in findings]
        raise ConfigError(problems, source=source)
    return config


def format_key_path(path: KeyPath) -> str:
    """`("products", "mobile.cmcc.50", "offers", 0)` -> `products["mobile.cmcc.50"].offers[0]`."""
    parts: list[str] = []
    for segment in path:
        if isinstance(segment, int):
            parts.append(f"[{segment}]")
        elif _IDENTIFIER.fullmatch(segment):
            parts.append(f".{segment}" if parts else segment)
        else:
            parts.append(f"[{json.dumps(segment, ensure_ascii=False)}]")
    return "".join(parts)


def bounds_text(bounds: Range, render: Callable[[float], str]) -> str:
    """`Range(1, 100)` -> "at least 1 and at most 100", with values shown through `render`."""
    parts: list[str] = []
    if bounds.minimum is not None:
        word = "greater than" if bounds.exclusive_minimum else "at least"
        parts.append(f"{word} {render(bounds.minimum)}")
    if bounds.maximum is not None:
        parts.append(f"at most {render(bounds.maximum)}")
    return " and ".join(parts)


class _YamlReader(yaml.SafeLoader):
    """PyYAML's safe loader, plus what it lacks: keys written twice in one mapping are reported.

    PyYAML keeps the last of two equal keys silently, which would hide a second `fulu:` supplier.
    """

    def __init__(self, text: str) -> None:
        super().__init__(text)
        # No config value is a date, and PyYAML fails outright on an impossible one (2026-13-45):
        # unquoted dates stay strings, for the field's own type check to judge.
        self.yaml_implicit_resolvers = {
            first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
            for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
        }

    def read(self) -> tuple[object, list[Finding]]:
        node = self.get_single_node()
        if node is None:
            return None, []
        duplicates = list(_duplicate_keys(node, (), frozenset()))
        return self.construct_document(node), duplicates


def _read_yaml(text: str) -> tuple[object, list[Finding]]:
    reader = _YamlReader(text)  # already reads the text: unprintable characters raise here
    try:
        return reader.read()
    finally:
        reader.dispose()


def _duplicate_keys(node: yaml.Node, path: KeyPath, active: frozenset[int]) -> Iterator[Finding]:
    if id(node) in active:  # an alias pointing back into itself
        return
    active |= {id(node)}
    if isinstance(node, yaml.MappingNode):
        first_lines: dict[tuple[str, str], int] = {}
        for key_node, value_node in node.value:
            # Merge keys (`<<: *base`) bring in keys meant to be overridden: not duplicates.
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == _MERGE_TAG:
                continue
            key = (key_node.tag, key_node.value)
            line = key_node.start_mark.line + 1
            if key in first_lines:
                message = f"duplicate key: first at line {first_lines[key]}, again at line {line}"
                yield (*path, key_node.value), message
            else:
                first_lines[key] = line
            yield from _duplicate_keys(value_node, (*path, key_node.value), active)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            yield from _duplicate_keys(item, (*path, index), active)


def _yaml_error_message(error: yaml.YAMLError | ValueError) -> str:
    if isinstance(error, yaml.MarkedYAMLError) and error.problem_mark is not None:
        mark = error.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}"
        context = f" ({error.context})" if error.context else ""
        return f"invalid YAML at {where}: {error.problem}{context}"
    return f"invalid YAML: {str(error).splitlines()[0]}"


def _declared_names(data: object) -> tuple[set[str], set[str]] | None:
    """Supplier and product names as written, even those whose entries failed to convert.

    None when `suppliers` or `products` is not even a mapping: references cannot be judged then.
    """
    if data is None:
        return set(), set()
    if not isinstance(data, dict):
        return None
    sections = [data.get("suppliers"), data.get("products")]
    if not all(section is None or isinstance(section, dict) for section in sections):
        return None
    suppliers, products = ({key for key in section or {} if isinstance(key, str)} for section in sections)
    return suppliers, products


class _Converter:
    """Turns parsed YAML into model instances, led by the dataclasses' type hints and markers.

    Every problem is recorded and conversion goes on, so one run reports them all. A value with
    any problem is `_INVALID` and so is whatever contains it, except that a map drops only the
    failed entry: the checks then see only entries that are entirely valid.
    """

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ
        self._hints: dict[type, dict[str, Any]] = {}
        self.findings: list[Finding] = []

    def convert_root(self, data: object, cls: type[_T]) -> _T:
        """Convert the whole document; failed fields fall back to their defaults.

        That fallback only lets the cross-section checks run on the rest; a caller that found
        problems must not use the result.
        """
        if data is None:
            data = {}
        if not isinstance(data, dict):
            self._problem((), f"expected a mapping of sections at the top level, got {_describe(data)}")
            return cls()
        return cls(**self._fields(data, cls, ()))

    def convert(self, value: object, hint: Any, path: KeyPath) -> object:
        base, markers = split_markers(hint)
        if isinstance(value, str):
            expanded = self._expand(value, path)
            if expanded is None:
                return _INVALID
            value = expanded
        return self._convert(value, base, markers, path)

    def _convert(self, value: object, base: Any, markers: tuple[object, ...], path: KeyPath) -> object:
        origin = get_origin(base)
        if origin is Union or origin is UnionType:
            return self._optional(value, base, markers, path)
        if isinstance(base, type) and dataclasses.is_dataclass(base):
            return self._dataclass(value, base, path)
        if origin is Mapping:
            key_hint, value_hint = get_args(base)
            return self._mapping(value, key_hint, value_hint, path)
        if origin is tuple:
            item_hint, ellipsis = get_args(base)
            if ellipsis is not Ellipsis:
                raise TypeError(f"config tuples must be tuple[X, ...], got {base!r}")
            return self._tuple(value, item_hint, markers, path)
        converted = self._scalar(value, base, markers, path)
        if converted is _INVALID:
            return converted
        return self._constrained(converted, markers, path)

    def _optional(self, value: object, base: Any, markers: tuple[object, ...], path: KeyPath) -> object:
        arms = [arm for arm in get_args(base) if arm is not type(None)]
        if len(arms) != 1 or len(get_args(base)) != 2:
            raise TypeError(f"config unions must be X | None, got {base!r}")
        if value is None:
            return None
        return self._convert(value, arms[0], markers, path)

    def _dataclass(self, value: object, cls: type, path: KeyPath) -> object:
        if value is None:  # a section with every line commented out
            value = {}
        if not isinstance(value, dict):
            self._problem(path, f"expected a mapping, got {_describe(value)}")
            return _INVALID
        before = len(self.findings)
        fields = self._fields(value, cls, path)
        if len(self.findings) != before:
            return _INVALID
        return cls(**fields)

    def _fields(self, value: dict[Any, Any], cls: type, path: KeyPath) -> dict[str, object]:
        """The converted fields present in `value`; unknown and missing keys are recorded."""
        hints = self._type_hints(cls)
        names = [field.name for field in dataclasses.fields(cls) if field.init]
        converted: dict[str, object] = {}
        for key, item in value.items():
            if not isinstance(key, str) or key not in names:
                self._problem((*path, str(key)), _unknown_key_message(key, names))
                continue
            result = self.convert(item, hints[key], (*path, key))
            if result is not _INVALID:
                converted[key] = result
        for field in dataclasses.fields(cls):
            required = field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING
            if field.init and required and field.name not in value:
                self._problem((*path, field.name), "required key is missing")
        return converted

    def _mapping(self, value: object, key_hint: Any, value_hint: Any, path: KeyPath) -> object:
        if value is None:
            value = {}
        if not isinstance(value, dict):
            self._problem(path, f"expected a mapping, got {_describe(value)}")
            return _INVALID
        _, key_markers = split_markers(key_hint)
        entries: dict[str, object] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                self._problem(
                    (*path, str(key)), f'keys must be strings, got {_describe(key)}; quote it: "{key}"'
                )
                continue
            key_ok = True
            for marker in key_markers:
                if isinstance(marker, Pattern) and not re.fullmatch(marker.regex, key):
                    self._problem((*path, key), f"invalid name: {marker.message}")
                    key_ok = False
            result = self.convert(item, value_hint, (*path, key))
            if key_ok and result is not _INVALID:
                entries[key] = result
        return MappingProxyType(entries)

    def _tuple(self, value: object, item_hint: Any, markers: tuple[object, ...], path: KeyPath) -> object:
        if value is None:
            value = []
        if not isinstance(value, list):
            hint = f'; write a list: ["{value}"]' if isinstance(value, str) else ""
            self._problem(path, f"expected a list, got {_describe(value)}{hint}")
            return _INVALID
        before = len(self.findings)
        items = tuple(self.convert(item, item_hint, (*path, index)) for index, item in enumerate(value))
        for marker in markers:
            if isinstance(marker, MinItems) and len(items) < marker.count:
                self._problem(
                    path, f"must have at least {marker.count} item{'' if marker.count == 1 else 's'}"
                )
        return _INVALID if len(self.findings) != before else items

    def _scalar(self, value: object, base: Any, markers: tuple[object, ...], path: KeyPath) -> object:
        if any(isinstance(marker, Duration) for marker in markers):
            return self._duration(value, path)
        if any(isinstance(marker, Money) for marker in markers):
            return self._money(value, path)
        if base is bool:
            return value if isinstance(value, bool) else self._expected("true or false", value, path)
        if base is int:
            if isinstance(value, int) and not isinstance(value, bool):
                return value
            return self._expected("an integer", value, path)
        if base is float:
            if isinstance(value, bool) or not isinstance(value, int | float):
                return self._expected("a number", value, path)
            if not math.isfinite(value):
                return self._expected("a finite number", value, path)
            return float(value)
        if base is str:
            return value if isinstance(value, str) else self._expected("a string", value, path, quote=True)
        if base is Secret:
            if isinstance(value, str):
                return Secret(value)
            # The type alone: the value may be the secret itself.
            self._problem(path, f"expected a string, got {_kind(value)}; quote it")
            return _INVALID
        if isinstance(base, type) and issubclass(base, StrEnum):
            if isinstance(value, str) and value in {member.value for member in base}:
                return base(value)
            valid = ", ".join(member.value for member in base)
            self._problem(path, f"must be one of {valid}; got {_describe(value)}{_enum_hint(value, base)}")
            return _INVALID
        raise TypeError(f"unsupported config type {base!r} at {format_key_path(path)}")

    def _duration(self, value: object, path: KeyPath) -> object:
        if isinstance(value, str) and _DURATION.fullmatch(value):
            return parse_duration(value)
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if number or (isinstance(value, str) and _BARE_NUMBER.fullmatch(value)):
            self._problem(
                path, f'a duration needs a unit (ms, s, m or h), e.g. "{value}s"; got {_describe(value)}'
            )
        else:
            self._problem(path, f"must be a duration like 250ms, 2s, 5m or 24h; got {_describe(value)}")
        return _INVALID

    def _money(self, value: object, path: KeyPath) -> object:
        if isinstance(value, str):
            try:
                return parse_money(value)
            except InvalidMoney:
                message = 'must be a decimal amount like "49.30": no sign, at most two decimals'
                self._problem(path, f"{message}; got {_describe(value)}")
                return _INVALID
        if isinstance(value, int | float) and not isinstance(value, bool):
            # A YAML number is a float for "49.30": exact cents need the quoted string.
            self._problem(
                path, f'money must be a quoted decimal string, e.g. "{value}"; got {_describe(value)}'
            )
        else:
            self._problem(path, f'expected a decimal string like "49.30", got {_describe(value)}')
        return _INVALID

    def _constrained(self, value: object, markers: tuple[object, ...], path: KeyPath) -> object:
        render = _renderer(markers)
        ok = True
        for marker in markers:
            if isinstance(marker, Range) and isinstance(value, int | float) and not _within(value, marker):
                self._problem(path, f"must be {bounds_text(marker, render)}; got {render(value)}")
                ok = False
            elif (
                isinstance(marker, Pattern)
                and isinstance(value, str)
                and not re.fullmatch(marker.regex, value)
            ):
                self._problem(path, f"{marker.message}; got {_describe(value)}")
                ok = False
        return value if ok else _INVALID

    def _expand(self, text: str, path: KeyPath) -> str | None:
        """`${NAME}` and `${NAME:-default}` from the injected environment, `$${` for a literal `${`."""
        missing: list[str] = []
        malformed = False

        def substitute(match: re.Match[str]) -> str:
            nonlocal malformed
            if match["escape"]:
                return "${"
            if match["malformed"]:
                malformed = True
                return ""
            name, default = match["name"], match["default"]
            value = self._environ.get(name)
            if default is not None and not value:  # as in the shell: empty counts as unset for `:-`
                return default
            if value is None:
                missing.append(name)
                return ""
            return value

        expanded = _REFERENCE.sub(substitute, text)
        if malformed:
            message = 'malformed "${": write ${NAME} or ${NAME:-default}, or $${ for a literal "${"'
            self._problem(path, message)
        names = list(dict.fromkeys(missing))
        if len(names) == 1:
            message = (
                f"environment variable {names[0]} is not set and has no default (${{{names[0]}:-default}})"
            )
            self._problem(path, message)
        elif names:
            self._problem(path, f"environment variables {', '.join(names)} are not set and have no default")
        return None if malformed or missing else expanded

    def _expected(self, what: str, value: object, path: KeyPath, *, quote: bool = False) -> object:
        hint = (
            f'; quote it: "{value}"'
            if quote and isinstance(value, int | float) and not isinstance(value, bool)
            else ""
        )
        self._problem(path, f"expected {what}, got {_describe(value)}{hint}")
        return _INVALID

    def _type_hints(self, cls: type) -> dict[str, Any]:
        # Resolved once per class and load: a file with many offers would otherwise redo it per offer.
        if cls not in self._hints:
            self._hints[cls] = get_type_hints(cls, include_extras=True)
        return self._hints[cls]

    def _problem(self, path: KeyPath, message: str) -> None:
        self.findings.append((path, message))


def _within(value: float, bounds: Range) -> bool:
    if bounds.minimum is not None and (
        value <= bounds.minimum if bounds.exclusive_minimum else value < bounds.minimum
    ):
        return False
    return bounds.maximum is None or value <= bounds.maximum


def _renderer(markers: tuple[object, ...]) -> Callable[[float], str]:
    """How a number under these markers is written in YAML, for messages: 0.25 -> "250ms"."""
    if any(isinstance(marker, Duration) for marker in markers):
        return format_duration
    if any(isinstance(marker, Money) for marker in markers):
        return lambda cents: format_money(int(cents))
    return _number


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _unknown_key_message(key: object, valid: list[str]) -> str:
    close = difflib.get_close_matches(str(key), valid, n=1)
    if close:
        return f'unknown key; did you mean "{close[0]}"?'
    return f"unknown key; valid keys: {', '.join(valid)}"


def _enum_hint(value: object, enum: type[StrEnum]) -> str:
    """A value that starts with a valid one is most likely it with a suffix: "江苏省" for 江苏."""
    if not isinstance(value, str):
        return ""
    starts = [member.value for member in enum if value.startswith(member.value)]
    return f'; did you mean "{max(starts, key=len)}"?' if starts else ""


def _kind(value: object) -> str:
    match value:
        case None:
            return "null"
        case bool():
            return "a boolean"
        case int():
            return "an integer"
        case float():
            return "a number"
        case str():
            return "a string"
        case list():
            return "a list"
        case dict():
            return "a mapping"
        case _:
            return f"a {type(value).__name__}"


def _describe(value: object) -> str:
    """A value for an error message: kind and, for scalars, the value as YAML shows it."""
    match value:
        case None:
            return "null"
        case bool():
            return f"boolean {str(value).lower()}"
        case int():
            return f"integer {value}"
        case float():
            return f"number {value!r}"
        case str():
            return f"string {json.dumps(value, ensure_ascii=False)}"
        case _:
            return _kind(value)
