"""The published JSON Schema of the config (draft 2020-12), as `voicecall config schema` prints it.

Pydantic writes the schema; `ConfigSchemaGenerator` makes it a standalone document for users:
the `$schema` dialect, every key titled by its camelCase name, defaults that come from a
factory filled in (`{}` for a nested object whose keys all default), secrets never given a
default, and no model docstrings (those are for maintainers; each key has its own description).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from pydantic import BaseModel, SecretStr, ValidationError
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaMode, JsonSchemaValue, NoDefault
from pydantic_core import CoreSchema, core_schema

from voicecall.config.schema import VoiceCallConfig

__all__ = [
    "JSON_SCHEMA_DIALECT",
    "SCHEMA_DESCRIPTION",
    "SCHEMA_TITLE",
    "ConfigSchemaGenerator",
    "config_json_schema",
    "iter_subschemas",
]

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"

SCHEMA_TITLE = "voicecall configuration"
SCHEMA_DESCRIPTION = (
    "Configuration of the voicecall gateway: a bare voice-call object, or the `config` object of "
    "`plugins.entries.voice-call` in an OpenClaw config. Every key is optional and unknown keys are "
    "errors. `${VAR}` in a string is replaced by the environment variable VAR. Older key names are "
    "migrated when the file is loaded (`voicecall doctor --fix` rewrites them) and are not listed here."
)

# Keywords whose value is a map of names to subschemas, and those holding one or a list of them.
_SCHEMA_MAPS = ("$defs", "properties", "patternProperties", "dependentSchemas")
_SCHEMA_VALUES = ("additionalProperties", "items", "propertyNames", "contains", "not", "if", "then", "else",
                  "unevaluatedItems", "unevaluatedProperties")
_SCHEMA_LISTS = ("allOf", "anyOf", "oneOf", "prefixItems")


def iter_subschemas(schema: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """`schema` and every schema nested in it, parents first (`true`/`false` schemas skipped)."""
    if isinstance(schema, dict):
        yield schema
    for keyword in _SCHEMA_MAPS:
        for sub in (schema.get(keyword) or {}).values():
            if isinstance(sub, Mapping):
                yield from iter_subschemas(sub)
    for keyword in _SCHEMA_VALUES:
        sub = schema.get(keyword)
        if isinstance(sub, Mapping):
            yield from iter_subschemas(sub)
    for keyword in _SCHEMA_LISTS:
        for sub in schema.get(keyword) or ():
            if isinstance(sub, Mapping):
                yield from iter_subschemas(sub)


def _holds_secret(value: Any) -> bool:
    if isinstance(value, SecretStr):
        return True
    if isinstance(value, BaseModel):
        return any(_holds_secret(getattr(value, name)) for name in type(value).model_fields)
    if isinstance(value, Mapping):
        return any(_holds_secret(item) for item in value.values())
    if isinstance(value, (list, tuple, set, frozenset)):
        return any(_holds_secret(item) for item in value)
    return False


def _is_empty_default(value: BaseModel) -> bool:
    """True when `value` is what an empty object validates to (every key at its default)."""
    try:
        return value == type(value).model_validate({})
    except ValidationError:  # the model has required keys
        return False


class ConfigSchemaGenerator(GenerateJsonSchema):
    """Pydantic's generator, adjusted for a schema users read (see the module docstring)."""

    def get_default_value(self, schema: core_schema.WithDefaultSchema) -> Any:
        factory = schema.get("default_factory")
        if factory is not None and not schema.get("default_factory_takes_data"):
            value = factory()  # type: ignore[call-arg]  # a factory that takes no data
        else:
            value = super().get_default_value(schema)
        if value is NoDefault:
            return NoDefault
        if _holds_secret(value):
            return NoDefault  # a secret's default would be published with the schema
        if isinstance(value, BaseModel) and _is_empty_default(value):
            return {}  # the nested keys list their own defaults
        return value

    def generate(self, schema: CoreSchema, mode: JsonSchemaMode = "validation") -> JsonSchemaValue:
        json_schema = super().generate(schema, mode=mode)
        for definition in json_schema.get("$defs", {}).values():
            definition.pop("title", None)  # the Python class name
            definition.pop("description", None)  # the class docstring
        json_schema["title"] = SCHEMA_TITLE
        json_schema["description"] = SCHEMA_DESCRIPTION
        for sub in iter_subschemas(json_schema):
            for key, prop in (sub.get("properties") or {}).items():
                if isinstance(prop, dict):
                    prop["title"] = key
            if "patternProperties" in sub and "additionalProperties" not in sub:
                # A dict with constrained keys (`numbers`): keys matching no pattern are errors too.
                sub["additionalProperties"] = False
        return {"$schema": JSON_SCHEMA_DIALECT, **json_schema}


def config_json_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of the voice-call config, keyed by the camelCase file names."""
    return VoiceCallConfig.model_json_schema(by_alias=True, schema_generator=ConfigSchemaGenerator)
