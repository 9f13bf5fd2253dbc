"""The config reference table (every key: path, type, default, description), generated from the schema.

The README keeps a copy between two marker comments; regenerate it with

    python -m voicecall.config.reference --write README.md

(`--check README.md` exits 1 when the copy is out of date; no option prints the table).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from voicecall.config.json_schema import config_json_schema
from voicecall.config.schema import E164_PATTERN

__all__ = [
    "END_MARKER",
    "REGENERATE_COMMAND",
    "START_MARKER",
    "ReferenceRow",
    "main",
    "reference_rows",
    "reference_table",
    "replace_reference",
]

START_MARKER = "<!-- config-reference:start -->"
END_MARKER = "<!-- config-reference:end -->"
REGENERATE_COMMAND = "python -m voicecall.config.reference --write README.md"

_HEADER = ("key", "type", "default", "description")
# What a map's own keys are, by the map's key: in the type column and in paths (`numbers.<number>`).
_MAP_KEYS: dict[str, tuple[str, str]] = {
    "numbers": ("E.164 number", "number"),
    "providers": ("provider id", "id"),
    "headers": ("header name", "name"),
}


@dataclass(frozen=True)
class ReferenceRow:
    """One config key as the reference table shows it (Markdown in `type` and `default`)."""

    path: str
    type: str
    default: str
    description: str


def _code(text: str) -> str:
    return f"`{text}`"


def _json(value: Any) -> str:
    return _code(json.dumps(value, ensure_ascii=False))


def _ref_name(schema: Mapping[str, Any]) -> str | None:
    ref = schema.get("$ref")
    return ref.rsplit("/", 1)[-1] if isinstance(ref, str) else None


def _without_null(schema: Mapping[str, Any]) -> Mapping[str, Any]:
    """`X` for `anyOf: [X, null]`; any other schema as it is."""
    options = schema.get("anyOf")
    if isinstance(options, list):
        rest = [option for option in options if option.get("type") != "null"]
        if len(rest) == 1:
            return {**{k: v for k, v in schema.items() if k != "anyOf"}, **rest[0]}
    return schema


def _number_text(kind: str, schema: Mapping[str, Any]) -> str:
    low, high = schema.get("minimum"), schema.get("maximum")
    if low is not None and high is not None:
        return f"{kind}, {low} to {high}"
    if low is not None:
        return f"{kind} ≥ {low}"
    if high is not None:
        return f"{kind} ≤ {high}"
    return kind


def _map_values(schema: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The schema of the values of a map-like object (`numbers`, `providers`); None for others."""
    if schema.get("type") != "object" or "properties" in schema:
        return None
    patterns = schema.get("patternProperties")
    if isinstance(patterns, Mapping) and len(patterns) == 1:
        values = next(iter(patterns.values()))
        return values if isinstance(values, Mapping) else None
    values = schema.get("additionalProperties")
    return values if isinstance(values, Mapping) else None


def _map_keys(key: str, schema: Mapping[str, Any]) -> tuple[str, str]:
    """(what a map's keys are, their placeholder in paths) for the map at `key`."""
    if key in _MAP_KEYS:
        return _MAP_KEYS[key]
    if E164_PATTERN in (schema.get("patternProperties") or {}):
        return "E.164 number", "number"
    return "name", "name"


def _type_text(
    schema: Mapping[str, Any], defs: Mapping[str, Any], seen: Mapping[str, str], key: str = ""
) -> str:
    """What the key at `key` holds, in words: `string`, `list of ...`, `map of ... to ...`."""
    schema = _without_null(schema)
    options = schema.get("anyOf")
    if isinstance(options, list):  # `secret string or SecretRef`
        return _any_of_text(options, defs, seen)
    name = _ref_name(schema)
    if name is not None:
        return _ref_text(name, defs, seen, key)
    if "const" in schema:
        return _json(schema["const"])
    if "enum" in schema:
        return ", ".join(_json(value) for value in schema["enum"])
    return _kind_text(schema, defs, seen, key)


def _any_of_text(options: list[Any], defs: Mapping[str, Any], seen: Mapping[str, str]) -> str:
    """The non-null alternatives, each once, joined by "or" (", or" when one has a comma)."""
    texts = [_type_text(option, defs, seen) for option in options if option.get("type") != "null"]
    unique = list(dict.fromkeys(texts))
    return (", or " if any("," in text for text in unique) else " or ").join(unique)


def _ref_text(name: str, defs: Mapping[str, Any], seen: Mapping[str, str], key: str) -> str:
    """A `$ref`: SecretRef by name, a model as an object (pointing at where its keys are listed),
    anything else as the type it stands for."""
    if name == "SecretRef":
        return "SecretRef"
    target = defs[name]
    if "properties" not in target:
        return _type_text(target, defs, seen, key)
    return f"object, keys as under {_code(seen[name])}" if name in seen else "object"


def _string_text(schema: Mapping[str, Any]) -> str:
    """A string: an E.164 number, a secret, or a string with a minimum length."""
    if schema.get("pattern") == E164_PATTERN:
        return "E.164 number"
    text = "secret string" if schema.get("writeOnly") else "string"
    min_length = schema.get("minLength", 0)
    return f"{text}, at least {min_length} characters" if min_length > 1 else text


def _kind_text(schema: Mapping[str, Any], defs: Mapping[str, Any], seen: Mapping[str, str], key: str) -> str:
    """A plain JSON type: scalars, lists, maps and other objects."""
    kind = schema.get("type")
    if kind in ("integer", "number"):
        return _number_text(str(kind), schema)
    if kind == "string":
        return _string_text(schema)
    if kind == "boolean":
        return "boolean"
    if kind == "array":
        return f"list of {_type_text(schema.get('items', {}), defs, seen)}"
    values = _map_values(schema)
    if values is not None:
        return f"map of {_map_keys(key, schema)[0]} to {_type_text(values, defs, seen)}"
    return "object" if kind == "object" else "any"


def _children(
    path: str, schema: Mapping[str, Any], defs: Mapping[str, Any], seen: dict[str, str]
) -> Iterator[ReferenceRow]:
    """Rows for the keys nested under the key at `path` (a model, a list of models or a map of them)."""
    schema = _without_null(schema)
    name = _ref_name(schema)
    if name is not None:
        target = defs[name]
        if "properties" in target and name not in seen:
            seen[name] = path
            yield from _rows(target, defs, seen, prefix=f"{path}.")
        return
    if schema.get("type") == "array" and isinstance(schema.get("items"), Mapping):
        yield from _children(f"{path}[]", schema["items"], defs, seen)
        return
    values = _map_values(schema)
    if values is not None:
        placeholder = _map_keys(path.rsplit(".", 1)[-1], schema)[1]
        yield from _children(f"{path}.<{placeholder}>", values, defs, seen)


def _rows(
    schema: Mapping[str, Any], defs: Mapping[str, Any], seen: dict[str, str], *, prefix: str = ""
) -> Iterator[ReferenceRow]:
    required = set(schema.get("required", ()))
    for key, prop in schema.get("properties", {}).items():
        path = prefix + key
        default = _json(prop["default"]) if "default" in prop else ("required" if key in required else "")
        # The type is worked out before the children: they mark their object as seen.
        kind = _type_text(prop, defs, seen, key)
        description = " ".join(str(prop.get("description", "")).split())
        yield ReferenceRow(path, kind, default, description)
        yield from _children(path, prop, defs, seen)


def reference_rows(schema: Mapping[str, Any] | None = None) -> list[ReferenceRow]:
    """Every key of the config schema, depth first in schema order.

    An object type used under several keys (`tts` and `numbers.<number>.tts`) is listed under the
    first one; the others say "keys as under" it. The keys of a SecretRef come last.
    """
    schema = config_json_schema() if schema is None else schema
    defs = schema.get("$defs", {})
    rows = list(_rows(schema, defs, {}))
    if "SecretRef" in defs:  # what a credential key holds instead of the value: listed once, last
        rows.extend(_rows(defs["SecretRef"], defs, {}, prefix="<SecretRef>."))
    return rows


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def reference_table(schema: Mapping[str, Any] | None = None) -> str:
    """The reference as a Markdown table (no trailing newline)."""
    lines = [
        "| " + " | ".join(_HEADER) + " |",
        "|" + "---|" * len(_HEADER),
    ]
    for row in reference_rows(schema):
        cells = (_code(row.path), row.type, row.default, row.description)
        lines.append("| " + " | ".join(_cell(cell) for cell in cells) + " |")
    return "\n".join(lines)


def replace_reference(document: str, table: str) -> str:
    """`document` with the text between the marker comments replaced by `table`.

    Raises ValueError when the markers are missing or out of order.
    """
    start = document.find(START_MARKER)
    end = document.find(END_MARKER)
    if start < 0 or end < start:
        raise ValueError(f"the document needs {START_MARKER} followed by {END_MARKER}")
    note = f"<!-- generated by `{REGENERATE_COMMAND}`; edit the schema, not this table -->"
    body = f"{START_MARKER}\n{note}\n\n{table}\n\n"
    return document[:start] + body + document[end:]


def main(argv: Sequence[str] | None = None) -> int:
    """Print the table, or `--write` / `--check` the copy in a Markdown file."""
    parser = argparse.ArgumentParser(prog="python -m voicecall.config.reference", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--write", metavar="FILE", type=Path, help="update the table in FILE")
    action.add_argument("--check", metavar="FILE", type=Path, help="exit 1 if the table in FILE is stale")
    args = parser.parse_args(argv)
    table = reference_table()
    target: Path | None = args.write or args.check
    if target is None:
        print(table)
        return 0
    current = target.read_text(encoding="utf-8")
    try:
        updated = replace_reference(current, table)
    except ValueError as exc:
        print(f"{target}: {exc}", file=sys.stderr)
        return 2
    if args.check:
        if updated != current:
            print(f"{target}: the config reference is out of date; run {REGENERATE_COMMAND}",
                  file=sys.stderr)
            return 1
        return 0
    if updated != current:
        target.write_text(updated, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
