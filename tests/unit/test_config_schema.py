"""The published config schema: standard JSON Schema (draft 2020-12) that documents every key,
agrees with the config models, and is the source of the README's generated reference table."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import json5
import pytest
from jsonschema import Draft202012Validator
from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError
from pydantic.alias_generators import to_camel

from voicecall.config import VoiceCallConfig, config_json_schema
from voicecall.config.json_schema import JSON_SCHEMA_DIALECT, ConfigSchemaGenerator
from voicecall.config.reference import (
    END_MARKER,
    REGENERATE_COMMAND,
    START_MARKER,
    main,
    reference_rows,
    reference_table,
    replace_reference,
)

README = Path(__file__).resolve().parents[2] / "README.md"

# Every keyword the 2020-12 vocabularies define that this schema may use; pydantic-only
# spellings (`ge`, `le`, `gt`, `lt`, `min_length` ...) are not among them.
STANDARD_KEYWORDS = frozenset({
    "$schema", "$defs", "$ref", "title", "description", "default", "examples", "deprecated",
    "readOnly", "writeOnly", "type", "enum", "const", "properties", "patternProperties",
    "additionalProperties", "propertyNames", "required", "minProperties", "maxProperties", "items",
    "prefixItems", "minItems", "maxItems", "uniqueItems", "contains", "anyOf", "allOf", "oneOf", "not",
    "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "minLength",
    "maxLength", "pattern", "format",
})
_NAME_MAPS = ("properties", "patternProperties", "$defs")  # their keys are names, not keywords
_VALUES = ("default", "const", "enum", "examples")  # their contents are data, not schemas


# --- helpers ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return config_json_schema()


def _schemas(node: Any) -> Iterator[dict[str, Any]]:
    """Every schema object in `node`, found without trusting the code under test."""
    if isinstance(node, list):
        for item in node:
            yield from _schemas(item)
        return
    if not isinstance(node, dict):
        return
    yield node
    for key, value in node.items():
        if key in _VALUES:
            continue
        if key in _NAME_MAPS and isinstance(value, dict):
            for sub in value.values():
                yield from _schemas(sub)
        else:
            yield from _schemas(value)


def _keys(schema: dict[str, Any]) -> Iterator[tuple[dict[str, Any], str, dict[str, Any]]]:
    """(owning object schema, key, key schema) for every key of every object in the schema."""
    for owner in _schemas(schema):
        for key, prop in (owner.get("properties") or {}).items():
            yield owner, key, prop


def _models(model: type[BaseModel] = VoiceCallConfig) -> dict[str, type[BaseModel]]:
    """The config model classes reachable from `model`, by class name (the `$defs` names)."""
    found: dict[str, type[BaseModel]] = {model.__name__: model}

    def visit(annotation: Any) -> None:
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            if annotation.__name__ not in found:
                found.update(_models(annotation))
            return
        for arg in getattr(annotation, "__args__", ()) or ():
            visit(arg)
        for item in getattr(annotation, "__metadata__", ()) or ():  # a SecretRef accepted as input
            visit(getattr(item, "json_schema_input_type", None))

    for info in model.model_fields.values():
        visit(info.annotation)
    return found


def _voice_call_object(document: dict[str, Any]) -> dict[str, Any]:
    """The voice-call object of a README example (bare, or inside an OpenClaw config)."""
    if "plugins" in document:
        config = document["plugins"]["entries"]["voice-call"]["config"]
        assert isinstance(config, dict)
        return config
    return document


def _readme_examples() -> list[dict[str, Any]]:
    blocks = re.findall(r"```json5\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.DOTALL)
    return [_voice_call_object(json5.loads(block)) for block in blocks]


def _schema_errors(schema: dict[str, Any], instance: Any) -> list[str]:
    return [error.message for error in Draft202012Validator(schema).iter_errors(instance)]


# --- the schema is standard JSON Schema -------------------------------------------------------


def test_schema_declares_draft_2020_12_and_passes_the_metaschema(schema: dict[str, Any]) -> None:
    assert schema["$schema"] == JSON_SCHEMA_DIALECT == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)


def test_schema_uses_only_standard_keywords(schema: dict[str, Any]) -> None:
    used = {keyword for node in _schemas(schema) for keyword in node}
    assert used - STANDARD_KEYWORDS == set()


def test_numeric_bounds_are_minimum_and_maximum(schema: dict[str, Any]) -> None:
    defs = schema["$defs"]
    port = defs["ServeConfig"]["properties"]["port"]
    assert (port["minimum"], port["maximum"]) == (0, 65535)
    assert schema["properties"]["maxConcurrentCalls"]["minimum"] == 1
    tts_timeout = defs["TtsConfig"]["properties"]["timeoutMs"]["anyOf"][0]
    assert (tts_timeout["minimum"], tts_timeout["maximum"]) == (1000, 120000)
    speed = defs["ElevenLabsVoiceSettings"]["properties"]["speed"]["anyOf"][0]
    assert (speed["minimum"], speed["maximum"]) == (0.5, 2)


def test_numbers_refuses_keys_that_are_not_e164_numbers(schema: dict[str, Any]) -> None:
    assert schema["properties"]["numbers"]["additionalProperties"] is False
    assert _schema_errors(schema, {"numbers": {"reception": {}}})


# --- the schema documents every key -----------------------------------------------------------


def test_every_key_has_a_description_and_a_default(schema: dict[str, Any]) -> None:
    undocumented = [key for _, key, prop in _keys(schema) if not str(prop.get("description", "")).strip()]
    no_default = [key for owner, key, prop in _keys(schema)
                  if "default" not in prop and key not in owner.get("required", ())]
    assert undocumented == []
    assert no_default == []


def test_titles_are_the_camelcase_key_names(schema: dict[str, Any]) -> None:
    keys = list(_keys(schema))
    assert [key for _, key, prop in keys if prop.get("title") != key] == []
    titled = [node for node in _schemas(schema) if "title" in node]
    assert len(titled) == len(keys) + 1  # the keys and the document itself: no class names
    assert "fromNumber" in schema["properties"] and "from_number" not in schema["properties"]


def test_schema_text_has_no_internal_notes(schema: dict[str, Any]) -> None:
    texts = [str(node[field]) for node in _schemas(schema) for field in ("title", "description")
             if field in node]
    models = _models()
    python_names = {name for model in models.values() for name, info in model.model_fields.items()
                    if "_" in name and info.alias != name}
    models.pop("SecretRef")  # the users' name for a credential reference (OpenClaw's), not only a class
    forbidden = [
        re.compile(r"docs/|\.md\b|\bD\d+\b"),  # the maintainers' decision records
        re.compile(r"\b(TODO|FIXME|XXX|pydantic|SecretStr)\b"),
        re.compile(r"\b(" + "|".join(sorted(python_names | set(models))) + r")\b"),
    ]
    leaks = [(pattern.pattern[:30], text) for text in texts for pattern in forbidden if pattern.search(text)]
    assert leaks == []
    assert python_names and "speak_ms_per_char" in python_names  # the check above looks at something


def _sample(prop: dict[str, Any]) -> Any:
    """A valid value for a required key: its first choice, else a name-like string."""
    return prop["enum"][0] if "enum" in prop else "X"


def test_defaults_in_the_schema_are_the_models_defaults(schema: dict[str, Any]) -> None:
    models = _models()
    owners = [("VoiceCallConfig", schema), *schema["$defs"].items()]
    wrong: list[str] = []
    for name, owner in owners:
        model = models[name]
        base = {key: "https://x.example/" if key == "url" else _sample(owner["properties"][key])
                for key in owner.get("required", ())}
        expected = model.model_validate(base).model_dump(mode="json")
        for key, prop in owner.get("properties", {}).items():
            if "default" in prop and model.model_validate({**base, key: prop["default"]}).model_dump(
                    mode="json") != expected:
                wrong.append(f"{name}.{key}")
    assert wrong == []


def test_secret_keys_have_no_default_value(schema: dict[str, Any]) -> None:
    secrets = [(key, prop) for _, key, prop in _keys(schema) if '"writeOnly": true' in json.dumps(prop)]
    assert {key for key, _ in secrets} >= {"authToken", "apiKey", "token", "ngrokAuthToken", "headers"}
    assert [key for key, prop in secrets if prop.get("default") not in (None, {})] == []


def test_a_secret_default_is_left_out_of_the_schema() -> None:
    class WithSecret(BaseModel):
        model_config = ConfigDict(alias_generator=to_camel)
        auth_token: SecretStr = SecretStr("hunter2-hunter2")
        plain: str = "visible"

    published = WithSecret.model_json_schema(by_alias=True, schema_generator=ConfigSchemaGenerator)
    assert "default" not in published["properties"]["authToken"]
    assert published["properties"]["plain"]["default"] == "visible"
    assert "hunter2" not in json.dumps(published) and "*****" not in json.dumps(published)


# --- the schema agrees with the config models -------------------------------------------------


def test_readme_examples_are_valid_under_the_schema(schema: dict[str, Any]) -> None:
    examples = _readme_examples()
    assert len(examples) >= 4  # Twilio, the mock conversation, media streams, automatic replies
    for example in examples:
        assert _schema_errors(schema, example) == [], example
        VoiceCallConfig.model_validate(example)


@pytest.mark.parametrize("config", [
    {},
    {"tts": {"openai": {"voice": "alloy"}, "elevenlabs": None}},  # the older TTS shape
    {"numbers": {"+15550001234": {"inboundGreeting": "Welcome", "tts": {"provider": "elevenlabs"}}}},
    {"realtime": {"tools": [{"name": "lookup", "parameters": {"properties": {"q": {"type": "string"}}}}]}},
    {"responder": {"enabled": True, "type": "http", "url": "https://agent.example/turn",
                   "headers": {"Authorization": "Bearer abc"}}},
], ids=["empty", "tts-seed-shape", "numbers", "realtime-tool", "http-responder"])
def test_configs_the_models_accept_pass_the_schema(schema: dict[str, Any], config: dict[str, Any]) -> None:
    VoiceCallConfig.model_validate(config)
    assert _schema_errors(schema, config) == []


@pytest.mark.parametrize("config", [
    {"unknownKey": 1},
    {"serve": {"port": 70000}},
    {"mock": {"ringMs": -1}},
    {"tts": {"timeoutMs": 500}},
    {"maxConcurrentCalls": True},
    {"fromNumber": "555-0100"},
    {"numbers": {"555": {}}},
    {"provider": "nexmo"},
    {"control": {"token": "too-short"}},
    {"twilio": {"acountSid": "AC123"}},
], ids=["unknown-key", "port-range", "negative", "tts-timeout", "bool-for-int", "not-e164",
        "numbers-key", "enum", "token-length", "typo-nested"])
def test_configs_the_models_refuse_fail_the_schema(schema: dict[str, Any], config: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        VoiceCallConfig.model_validate(config)
    assert _schema_errors(schema, config) != []


# --- the generated reference table ------------------------------------------------------------


def test_readme_reference_table_is_the_generated_one() -> None:
    readme = README.read_text(encoding="utf-8")
    assert START_MARKER in readme and END_MARKER in readme
    assert replace_reference(readme, reference_table()) == readme, (
        f"README.md's config reference differs from the schema; regenerate it with: {REGENERATE_COMMAND}"
    )


def test_reference_lists_every_key_of_every_model() -> None:
    last_segments = {row.path.rsplit(".", 1)[-1] for row in reference_rows()}
    missing = [f"{name}.{info.alias or key}" for name, model in _models().items()
               for key, info in model.model_fields.items() if (info.alias or key) not in last_segments]
    assert missing == []


def test_reference_rows_give_type_default_and_description() -> None:
    rows = {row.path: row for row in reference_rows()}
    port = rows["serve.port"]
    assert (port.type, port.default) == ("integer, 0 to 65535", "`3334`")
    assert port.description.startswith("Port of the webhook server")
    assert rows["control.token"].type == "secret string, at least 16 characters, or SecretRef"
    assert rows["control.token"].default == "`null`"
    assert rows["outbound.defaultMode"].type == '`"notify"`, `"conversation"`'
    assert rows["numbers"].type == "map of E.164 number to object"
    assert rows["numbers.<number>.tts"].type == "object, keys as under `tts`"
    assert rows["tts.providers.<id>.voiceSettings.speed"].type == "number, 0.5 to 2"
    assert rows["realtime.tools[].name"].default == "required"
    assert rows["mock.callerReplies"].type == "list of string"


def test_reference_table_is_safe_markdown() -> None:
    lines = reference_table().splitlines()
    assert lines[0] == "| key | type | default | description |"
    for line in lines:
        cells = re.split(r"(?<!\\)\|", line)
        assert len(cells) == 6, line  # four cells: no stray pipe splits one
        outside_code = re.sub(r"`[^`]*`", "", line)
        assert "<" not in outside_code, line  # would be read as HTML


def test_reference_command_writes_the_marked_section_and_checks_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text(f"# Title\n\n{START_MARKER}\nstale table\n{END_MARKER}\n\nafter\n", encoding="utf-8")
    assert main(["--check", str(doc)]) == 1
    assert REGENERATE_COMMAND in capsys.readouterr().err
    assert main(["--write", str(doc)]) == 0
    text = doc.read_text(encoding="utf-8")
    assert text.startswith("# Title\n\n" + START_MARKER) and text.endswith(f"{END_MARKER}\n\nafter\n")
    assert reference_table() in text and "stale table" not in text
    assert main(["--check", str(doc)]) == 0


def test_reference_needs_both_markers() -> None:
    with pytest.raises(ValueError, match="config-reference"):
        replace_reference(f"{END_MARKER}\n{START_MARKER}\n", "table")
    with pytest.raises(ValueError):
        replace_reference("no markers here", "table")
