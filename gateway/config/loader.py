"""Reads `gateway.yaml` into the typed model: YAML, `${NAME}` expansion, validation and every error at once.

Owns the error types, the key-path format and the operator wording of pydantic's errors. The rules
themselves live in the model (`model.py`) and in `checks.py`; nothing here is specific to one section.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Final, TypeAlias, Union, cast, get_args, get_origin

import annotated_types
import yaml
from pydantic import BaseModel, PlainSerializer, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails

from gateway.config.checks import Finding, KeyPath, check_config
from gateway.config.model import DOCUMENT, RULES, GatewayConfig

Loc: TypeAlias = tuple[Any, ...]
"""A place as pydantic names it: map keys as the document has them, `"[key]"` for a key itself."""

_IDENTIFIER: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_BARE_NUMBER: Final = re.compile(r"[-+]?[0-9]+(?:\.[0-9]+)?")
_REFERENCE: Final = re.compile(
    r"\$(?P<escape>\$\{)"
    r"|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}"
    r"|(?P<malformed>\$\{)"
)
_MERGE_TAG: Final = "tag:yaml.org,2002:merge"
# What a value is called in messages; lists reach validation as tuples. bool before int: it is one.
_KINDS: Final = (
    (bool, "a boolean"),
    (int, "an integer"),
    (float, "a number"),
    (str, "a string"),
    (tuple | list, "a list"),
    (dict, "a mapping"),
)
_CONTEXT: Final = {DOCUMENT: True}
# The bounds the model uses, lower ones first, and how messages name them.
_BOUNDS: Final = (
    (annotated_types.Gt, "gt", "greater than"),
    (annotated_types.Ge, "ge", "at least"),
    (annotated_types.Le, "le", "at most"),
)
# What the simple type errors expected, in operator words.
_EXPECTED: Final = {
    "model_type": "a mapping",
    "dict_type": "a mapping",
    "int_type": "an integer",
    "float_type": "a number",
    "finite_number": "a finite number",
    "bool_type": "true or false",
}
# Errors saying a key is not wanted at all: whatever its value holds was never looked at.
_UNWANTED: Final = frozenset({"extra_forbidden", "invalid_key"})


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
    if data is None:
        data = {}
    if not isinstance(data, dict):
        findings.append(((), f"expected a mapping of sections at the top level, got {_describe(data)}"))
        raise ConfigError(_problems(findings), source=source)
    unexpanded: list[tuple[Loc, str]] = []
    document = cast(dict[Any, Any], _expanded(data, (), environ, unexpanded, frozenset()))  # still a dict
    config: GatewayConfig | None
    try:
        config = GatewayConfig.model_validate(document, context=_CONTEXT)
        errors: list[ErrorDetails] = []
    except ValidationError as error:
        config, errors = None, error.errors(include_url=False)
    found = _merged(errors, unexpanded, document)
    if found:
        config = _valid_part(document, [loc for loc, _ in found])
    findings.extend((_place(document, loc)[0], message) for loc, message in found)
    names = _declared_names(data)
    if config is not None and names is not None:
        supplier_names, product_names = names
        findings.extend(check_config(config, supplier_names=supplier_names, product_names=product_names))
    if findings or config is None:
        raise ConfigError(_problems(findings), source=source)
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


def unwrap(hint: Any) -> tuple[Any, tuple[object, ...]]:
    """`Annotated[int, Field(ge=1)] | None` -> `(int, (Ge(ge=1),))`: the type and the metadata around it."""
    metadata: list[object] = []
    while True:
        if get_origin(hint) is Annotated:
            hint, *extras = get_args(hint)
            for extra in extras:
                metadata.extend(extra.metadata if isinstance(extra, FieldInfo) else [extra])
        elif get_origin(hint) in (Union, UnionType):
            hint = next(arm for arm in get_args(hint) if arm is not type(None))
        else:
            return hint, tuple(metadata)


def bounds_text(metadata: Sequence[object]) -> str:
    """`Field(gt=0, le=1)` -> "greater than 0 and at most 1", values shown as the file writes them."""
    render = _renderer(metadata)
    return " and ".join(
        f"{words} {render(getattr(item, name))}"
        for kind, name, words in _BOUNDS
        for item in metadata
        if isinstance(item, kind)
    )


def _declared(loc: Loc) -> tuple[Any, tuple[object, ...]]:
    """What the model declares at `loc`: the type without Annotated and None, and the metadata met on
    the way there (bounds, readers, writers). `(None, ())` for a key the model does not know."""
    hint: Any = GatewayConfig
    metadata: tuple[object, ...] = ()
    for segment in loc:
        base, _ = unwrap(hint)
        if isinstance(base, type) and issubclass(base, BaseModel) and segment in base.model_fields:
            hint, metadata = base.model_fields[segment].annotation, tuple(base.model_fields[segment].metadata)
        elif get_origin(base) is Mapping:
            hint, metadata = get_args(base)[0 if segment == "[key]" else 1], ()
        elif get_origin(base) is tuple:
            hint, metadata = get_args(base)[0], ()
        else:
            return None, ()
    base, inner = unwrap(hint)
    return base, metadata + inner


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


def _problems(findings: list[Finding]) -> list[Problem]:
    return [Problem(format_key_path(path), message) for path, message in findings]


def _declared_names(data: object) -> tuple[set[str], set[str]] | None:
    """Supplier and product names as written, even those whose entries failed to convert.

    None when `suppliers` or `products` is not even a mapping: references cannot be judged then.
    """
    if not isinstance(data, dict):
        return None
    sections = [data.get("suppliers"), data.get("products")]
    if not all(section is None or isinstance(section, dict) for section in sections):
        return None
    suppliers, products = ({key for key in section or {} if isinstance(key, str)} for section in sections)
    return suppliers, products


def _expanded(
    node: object,
    loc: Loc,
    environ: Mapping[str, str],
    failures: list[tuple[Loc, str]],
    active: frozenset[int],
) -> object:
    """The document with `${NAME}` expanded in every string value, and lists as the tuples the model takes.

    A string whose references fail stays as written, its problems in `failures`.
    """
    if isinstance(node, str):
        text, problems = _expand(node, environ)
        failures.extend((loc, problem) for problem in problems)
        return node if problems else text
    if id(node) in active:  # an alias pointing back into itself: left for validation to refuse
        return node
    active |= {id(node)}
    if isinstance(node, dict):
        return {key: _expanded(item, (*loc, key), environ, failures, active) for key, item in node.items()}
    if isinstance(node, list):
        return tuple(_expanded(item, (*loc, i), environ, failures, active) for i, item in enumerate(node))
    return node


def _expand(text: str, environ: Mapping[str, str]) -> tuple[str, list[str]]:
    """`${NAME}` and `${NAME:-default}` from `environ`, `$${` for a literal `${`; and what went wrong."""
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
        value = environ.get(name)
        if default is not None and not value:  # as in the shell: empty counts as unset for `:-`
            return default
        if value is None:
            missing.append(name)
            return ""
        return value

    expanded = _REFERENCE.sub(substitute, text)
    problems: list[str] = []
    if malformed:
        problems.append('malformed "${": write ${NAME} or ${NAME:-default}, or $${ for a literal "${"')
    names = list(dict.fromkeys(missing))
    if len(names) == 1:
        problems.append(
            f"environment variable {names[0]} is not set and has no default (${{{names[0]}:-default}})"
        )
    elif names:
        problems.append(f"environment variables {', '.join(names)} are not set and have no default")
    return expanded, problems


def _merged(
    errors: list[ErrorDetails], unexpanded: list[tuple[Loc, str]], document: object
) -> list[tuple[Loc, str]]:
    """Validation errors and expansion failures as one list, each reported once, in reading order.

    A value whose references failed was validated as written: its own errors say nothing. A value
    under an unwanted key or inside a container of the wrong type was never read: its references
    are not reported either.
    """
    failed = [loc for loc, _ in unexpanded]
    kept = [
        error
        for error in errors
        if (error["type"] in _UNWANTED or not any(_within(error["loc"], loc) for loc in failed))
        and not _short_of_failed_items(error)
    ]
    found = [(tuple(error["loc"]), _message(error)) for error in kept]
    found.extend(
        (loc, message) for loc, message in unexpanded if not any(_within(loc, e["loc"]) for e in kept)
    )
    return sorted(found, key=lambda item: _place(document, item[0])[1])


def _short_of_failed_items(error: ErrorDetails) -> bool:
    """pydantic counts only the items that passed; the file has enough, and those that failed say why."""
    written = error["input"]
    needed = error.get("ctx", {}).get("min_length", 0)
    return error["type"] == "too_short" and isinstance(written, tuple) and len(written) >= needed


def _within(loc: Loc, outer: Loc) -> bool:
    return tuple(loc[: len(outer)]) == tuple(outer)


def _place(document: object, loc: Loc) -> tuple[KeyPath, tuple[int, ...]]:
    """Where `loc` is in the document: its key path, and its position in reading order to sort by.

    A key the document lacks (a missing required key) sorts after the keys it has.
    """
    path: list[str | int] = []
    order: list[int] = []
    node: Any = document
    for segment in loc:
        if segment == "[key]":  # a problem of the key itself is reported at its entry
            break
        if isinstance(node, dict):
            keys: list[Any] = list(node)
            # A map key as text, whatever YAML made of it (pydantic shows `true` as 1).
            path.append(str(keys[keys.index(segment)] if segment in keys else segment))
        else:
            keys = [*range(len(node))] if isinstance(node, tuple) else []
            path.append(segment)
        order.append(keys.index(segment) if segment in keys else len(keys))
        node = node[segment] if segment in keys else ()
    return tuple(path), tuple(order)


def _valid_part(document: dict[Any, Any], locs: list[Loc]) -> GatewayConfig | None:
    """The document without what failed, validated, for the cross-section checks to judge the rest.

    An entry of a map section (one shop, supplier or product) with a problem is left out whole; any
    other section with a problem is left at its defaults. A caller that found problems must not use
    the result for anything else.
    """
    kept = dict(document)
    for loc in locs:
        if not loc or loc[0] not in kept:
            continue
        section = kept[loc[0]]
        if len(loc) > 1 and isinstance(section, dict) and get_origin(_declared(loc[:1])[0]) is Mapping:
            kept[loc[0]] = {key: value for key, value in section.items() if key != loc[1]}
        else:
            del kept[loc[0]]
    try:
        return GatewayConfig.model_validate(kept, context=_CONTEXT)
    except ValidationError:
        return None


def _message(error: ErrorDetails) -> str:
    """A pydantic error in the words operators have always read: what was expected, and what was found."""
    kind, value, loc = error["type"], error["input"], tuple(error["loc"])
    got = _describe(value)
    match kind:
        case "missing":
            return "required key is missing"
        case "extra_forbidden" | "invalid_key":
            section, _ = _declared(loc[:-1])
            return _unknown_key_message(loc[-1], list(getattr(section, "model_fields", ())))
        case _ if kind in _EXPECTED:
            return f"expected {_EXPECTED[kind]}, got {got}"
        case "tuple_type":
            hint = f'; write a list: ["{value}"]' if isinstance(value, str) else ""
            return f"expected a list, got {got}{hint}"
        case "too_short":
            count = error.get("ctx", {}).get("min_length", 1)
            return f"must have at least {count} item{'' if count == 1 else 's'}"
        case "string_type" if loc[-1:] == ("[key]",):
            return f'keys must be strings, got {got}; quote it: "{value}"'
        case "string_type":
            return f"expected a string, got {got}" + (f'; quote it: "{value}"' if _is_number(value) else "")
        case "secret_type":
            # The type alone: the value may be the secret itself.
            return f"expected a string, got {_kind(value)}; quote it"
        case "string_pattern_mismatch":
            pattern = str(error.get("ctx", {}).get("pattern", ""))
            rule = RULES.get(pattern, f"must match {pattern}")
            return f"invalid name: {rule}" if loc[-1:] == ("[key]",) else f"{rule}; got {got}"
        case "enum":
            return _enum_message(_declared(loc)[0], value)
        case "greater_than" | "greater_than_equal" | "less_than" | "less_than_equal":
            _, metadata = _declared(loc)
            return f"must be {bounds_text(metadata)}; got {_renderer(metadata)(value)}"
        case "duration" if _is_number(value) or (isinstance(value, str) and _BARE_NUMBER.fullmatch(value)):
            return f'a duration needs a unit (ms, s, m or h), e.g. "{value}s"; got {got}'
        case "duration":
            return f"must be a duration like 250ms, 2s, 5m or 24h; got {got}"
        case "money" if isinstance(value, str):
            return f'must be a decimal amount like "49.30": no sign, at most two decimals; got {got}'
        case "money" if _is_number(value):
            # A YAML number is a float for "49.30": exact cents need the quoted string.
            return f'money must be a quoted decimal string, e.g. "{value}"; got {got}'
        case "money":
            return f'expected a decimal string like "49.30", got {got}'
        case _:
            return error["msg"]


def _enum_message(enum: Any, value: object) -> str:
    members = (
        [member.value for member in enum] if isinstance(enum, type) and issubclass(enum, StrEnum) else []
    )
    # A value that starts with a valid one is most likely it with a suffix: "江苏省" for 江苏.
    starts = [member for member in members if isinstance(value, str) and value.startswith(member)]
    hint = f'; did you mean "{max(starts, key=len)}"?' if starts else ""
    return f"must be one of {', '.join(members)}; got {_describe(value)}{hint}"


def _renderer(metadata: Sequence[object]) -> Callable[[Any], str]:
    """How a number under these rules is written in gateway.yaml: the field's serializer, if it has one."""
    for item in metadata:
        if isinstance(item, PlainSerializer):
            return cast(Callable[[Any], str], item.func)  # format_duration, format_money
    return _number


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _unknown_key_message(key: object, valid: list[str]) -> str:
    close = difflib.get_close_matches(str(key), valid, n=1)
    if close:
        return f'unknown key; did you mean "{close[0]}"?'
    return f"unknown key; valid keys: {', '.join(valid)}"


def _kind(value: object) -> str:
    if value is None:
        return "null"
    return next((kind for cls, kind in _KINDS if isinstance(value, cls)), f"a {type(value).__name__}")


def _describe(value: object) -> str:
    """A value for an error message: kind and, for scalars, the value as YAML shows it."""
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, int | float | str):
        shown = json.dumps(value, ensure_ascii=False) if isinstance(value, str) else repr(value)
        return f"{_kind(value).split()[-1]} {shown}"  # "an integer" -> "integer 8080"
    return _kind(value)
