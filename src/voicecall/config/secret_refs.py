"""SecretRef credentials (docs/decisions.md D90): the `{source, provider, id}` reference a credential
key may hold instead of a plain string, and the top-level `secrets` block that names its providers.

Only the shapes live here; `secret_sources` reads the values (env, file, exec).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Protocol, Self

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

__all__ = [
    "IMPLICIT_ENV_PROVIDER",
    "SECRETS_CONTEXT_KEY",
    "SecretProviderConfig",
    "SecretRef",
    "SecretResolving",
    "SecretSource",
    "SecretsConfig",
    "SecretsDefaults",
    "looks_like_ref",
]

SECRETS_CONTEXT_KEY = "voicecall.secrets"
"""Key of the resolver in the pydantic validation context the loader passes."""

IMPLICIT_ENV_PROVIDER = "default"
"""The env provider that exists without being listed in `secrets.providers`."""

SecretSource = Literal["env", "file", "exec"]

PROVIDER_NAME_PATTERN = r"^[a-z][a-z0-9_-]{0,63}$"
ENV_NAME_PATTERN = r"^[A-Z][A-Z0-9_]{0,127}$"
EXEC_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,255}$"
_ENV_NAME = re.compile(ENV_NAME_PATTERN)
_EXEC_ID = re.compile(EXEC_ID_PATTERN)
DEFAULT_MAX_BYTES = 1024 * 1024
DEFAULT_EXEC_TIMEOUT_MS = 5000


def _reject_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("must be a number, not true/false")
    return value


ProviderAlias = Annotated[str, Field(pattern=PROVIDER_NAME_PATTERN)]
EnvName = Annotated[str, Field(pattern=ENV_NAME_PATTERN)]
_Positive = Annotated[int, Field(ge=1), BeforeValidator(_reject_bool)]


class _Model(BaseModel):
    """camelCase keys, unknown keys rejected (the same rules as the rest of the config)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class SecretRef(_Model):
    """Where a credential's value comes from, instead of the value itself."""

    source: SecretSource = Field(
        description="`env` (an environment variable), `file` (a JSON file or a one-value file) or `exec` "
        "(a command that prints it).")
    provider: ProviderAlias | None = Field(
        None, description="Name of an entry of secrets.providers; unset: `secrets.defaults.<source>`, else "
        '`default` (an env provider that always exists).')
    id: str = Field(
        description="env: the variable name (`TWILIO_AUTH_TOKEN`). file: a JSON pointer "
        "(`/twilio/authToken`), or `value` for a singleValue file. exec: the id the command is asked "
        "for (`twilio/auth-token`).")

    @model_validator(mode="after")
    def _id_fits_source(self) -> Self:
        if self.source == "env" and not _ENV_NAME.match(self.id):
            raise ValueError("id must be an environment variable name like TWILIO_AUTH_TOKEN "
                             "(capital letters, digits and _)")
        if self.source == "file" and self.id != "value" and not self.id.startswith("/"):
            raise ValueError('id must be a JSON pointer starting with "/" (or "value" for a '
                             "singleValue file)")
        if self.source == "exec" and (
            not _EXEC_ID.match(self.id) or any(part in (".", "..") for part in self.id.split("/"))
        ):
            raise ValueError("id must be letters, digits and . _ : / - (no . or .. segments)")
        return self


class SecretProviderConfig(_Model):
    """One named secret provider (`secrets.providers.<name>`): the keys of all three sources."""

    source: SecretSource = Field(description="`env`, `file` or `exec`.")
    allowlist: list[EnvName] | None = Field(
        None, description="env: the only variables this provider may read; unset: any.")
    path: str | None = Field(
        None, description="file (required): absolute path of the file (`~` is expanded). It must belong to "
        "you (or root) and be readable by nobody else (chmod 600).")
    mode: Literal["json", "singleValue"] = Field(
        "json", description="file: `json` (ids are JSON pointers into the file) or `singleValue` (the whole "
        "file, without its final newline, is the value of id `value`).")
    max_bytes: _Positive = Field(
        DEFAULT_MAX_BYTES, description="file: largest file read, in bytes.")
    command: str | None = Field(
        None, description="exec (required): absolute path of the program. It runs without a shell, gets "
        '`{"protocolVersion":1,"provider":"<name>","ids":["<id>"]}` on stdin and prints '
        '`{"protocolVersion":1,"values":{"<id>":"<secret>"}}` (or `"errors":{"<id>":{"message":...}}`).')
    args: list[str] = Field(default_factory=list, description="exec: arguments of the command.")
    pass_env: list[EnvName] = Field(
        default_factory=list, description="exec: environment variables passed to the command (it gets no "
        "others).")
    timeout_ms: _Positive = Field(
        DEFAULT_EXEC_TIMEOUT_MS, description="exec: time limit of the command in milliseconds; it is killed "
        "after it.")
    max_output_bytes: _Positive = Field(
        DEFAULT_MAX_BYTES, description="exec: most output read from the command, in bytes; more is an error.")
    json_only: bool = Field(
        True, description="exec: the output is the JSON protocol; false: the whole output (without its final "
        "newline) is the value.")

    @field_validator("path", "command")
    @classmethod
    def _absolute(cls, value: str | None) -> str | None:
        if value is not None and not (value.startswith("/") or value == "~" or value.startswith("~/")):
            raise ValueError("must be an absolute path")
        return value

    @model_validator(mode="after")
    def _keys_fit_source(self) -> Self:
        from voicecall.config.schema import FieldPathError  # schema imports this module

        required = {"file": "path", "exec": "command"}.get(self.source)
        if required and getattr(self, required) is None:
            raise FieldPathError(required, f"is required when source is {self.source}")
        owners = {"allowlist": "env", "path": "file", "mode": "file", "max_bytes": "file",
                  "command": "exec", "args": "exec", "pass_env": "exec", "timeout_ms": "exec",
                  "max_output_bytes": "exec", "json_only": "exec"}
        for name in self.model_fields_set:
            owner, info = owners.get(name), type(self).model_fields[name]
            if owner not in (None, self.source) and getattr(self, name) != info.get_default(
                    call_default_factory=True):
                key = info.alias or name
                raise FieldPathError(key, f"applies to {owner} providers, not {self.source}")
        return self


class SecretsDefaults(_Model):
    """Which provider a SecretRef without `provider` uses, per source."""

    env: ProviderAlias | None = Field(
        None, description="Provider of env refs without a provider; unset: `default`.")
    file: ProviderAlias | None = Field(
        None, description="Provider of file refs without a provider; unset: `default`.")
    exec: ProviderAlias | None = Field(
        None, description="Provider of exec refs without a provider; unset: `default`.")


class SecretsConfig(_Model):
    """Secret providers for SecretRef credentials; in an OpenClaw config, its top-level `secrets`."""

    providers: dict[ProviderAlias, SecretProviderConfig] = Field(
        default_factory=dict, description="Named secret providers. An env provider named `default` exists "
        "without being listed.")
    defaults: SecretsDefaults = Field(
        default_factory=SecretsDefaults, description="Provider used by refs that name none, per source.")

    @model_validator(mode="after")
    def _defaults_exist(self) -> Self:
        from voicecall.config.schema import FieldPathError

        for source in ("env", "file", "exec"):
            name = getattr(self.defaults, source)
            if name is None:
                continue
            provider = self.providers.get(name)
            if provider is None and not (source == "env" and name == IMPLICIT_ENV_PROVIDER):
                raise FieldPathError(f"defaults.{source}",
                                     f'names "{name}", which is not in secrets.providers')
            if provider is not None and provider.source != source:
                raise FieldPathError(f"defaults.{source}", f'names "{name}", a {provider.source} provider')
        return self


class SecretResolving(Protocol):
    """What the credential fields need from the loader: a ref in, the value (or ValueError) out."""

    def resolve(self, ref: SecretRef) -> str: ...


def looks_like_ref(value: Any) -> bool:
    """True for an object given where a credential string goes (it is read as a SecretRef)."""
    return isinstance(value, dict) and "source" in value
