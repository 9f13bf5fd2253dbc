"""Read SecretRef values from their providers: environment, private file, or a command (D90).

`SecretResolver` is made once per config load; each (provider, id) is read at most once and the
values stay in memory. Every failure is a `SecretError` whose message names the provider and
what went wrong, never a value.
"""

from __future__ import annotations

import json
import os
import select
import signal
import stat
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from voicecall.config.paths import expand_user
from voicecall.config.secret_refs import (
    IMPLICIT_ENV_PROVIDER,
    SecretProviderConfig,
    SecretRef,
    SecretsConfig,
)

__all__ = ["SecretError", "SecretResolver"]

PROTOCOL_VERSION = 1
_MESSAGE_LIMIT = 200


class SecretError(ValueError):
    """A SecretRef could not be resolved; the message is safe to print (no secret in it)."""


@dataclass(frozen=True)
class _Named:
    name: str
    config: SecretProviderConfig


class SecretResolver:
    """Resolves SecretRefs against the providers of one `secrets` block and one environment."""

    def __init__(self, secrets: SecretsConfig | None, env: Mapping[str, str]) -> None:
        """`secrets` None: the `secrets` block itself is invalid, so every ref fails saying so."""
        self._secrets = secrets
        self._env = env
        self._values: dict[tuple[str, str], str | SecretError] = {}
        self._files: dict[str, Any] = {}

    def resolve(self, ref: SecretRef) -> str:
        """The value `ref` points at; SecretError (naming the provider) when there is none."""
        provider = self._provider(ref)
        key = (provider.name, ref.id)
        if key not in self._values:
            try:
                self._values[key] = self._read(provider, ref)
            except SecretError as exc:
                self._values[key] = exc
        found = self._values[key]
        if isinstance(found, SecretError):
            raise found
        return found

    def _provider(self, ref: SecretRef) -> _Named:
        if self._secrets is None:
            raise SecretError("the secrets block has errors (listed with this one)")
        name = ref.provider or getattr(self._secrets.defaults, ref.source) or IMPLICIT_ENV_PROVIDER
        config = self._secrets.providers.get(name)
        if config is None:
            if ref.source == "env" and name == IMPLICIT_ENV_PROVIDER:
                return _Named(name, SecretProviderConfig(source="env"))
            listed = ", ".join(sorted(self._secrets.providers)) or "none"
            raise SecretError(f'{ref.source} provider "{name}" is not in secrets.providers '
                              f"(listed: {listed})")
        if config.source != ref.source:
            raise SecretError(f'provider "{name}" is a {config.source} provider, but the ref has source '
                              f"{ref.source}")
        return _Named(name, config)

    def _read(self, provider: _Named, ref: SecretRef) -> str:
        where = f'{provider.config.source} provider "{provider.name}"'
        try:
            if provider.config.source == "env":
                value = self._from_env(provider.config, ref.id)
            elif provider.config.source == "file":
                value = self._from_file(provider, ref.id)
            else:
                value = _from_exec(provider, ref.id, self._env)
        except SecretError as exc:
            raise SecretError(f"{where}: {exc}") from None
        except OSError as exc:  # anything the checks above did not foresee, still by name only
            raise SecretError(f"{where}: {exc.strerror or exc.__class__.__name__}") from None
        if not value:
            raise SecretError(f"{where}: the value of {ref.id} is empty")
        return value

    def _from_env(self, config: SecretProviderConfig, name: str) -> str:
        if config.allowlist is not None and name not in config.allowlist:
            raise SecretError(f"{name} is not in its allowlist")
        value = self._env.get(name)
        if not value:
            raise SecretError(f"environment variable {name} is not set")
        return value

    def _from_file(self, provider: _Named, ref_id: str) -> str:
        config = provider.config
        if config.mode == "singleValue":
            if ref_id != "value":
                raise SecretError(f'a singleValue file has one value, id "value" (not {ref_id})')
            return _strip_newline(self._file_text(provider))
        if provider.name not in self._files:
            text = self._file_text(provider)
            try:
                self._files[provider.name] = json.loads(text)
            except ValueError:
                raise SecretError(f"{config.path} is not valid JSON") from None
        value = _json_pointer(self._files[provider.name], ref_id)
        if not isinstance(value, str):
            raise SecretError(f"{ref_id} in {config.path} is not a string")
        return value

    def _file_text(self, provider: _Named) -> str:
        config = provider.config
        path = expand_user(config.path or "", self._env)
        try:
            info = path.stat()
        except OSError as exc:
            raise SecretError(f"cannot read {path}: {exc.strerror or exc.__class__.__name__}") from None
        _check_private(path, info)
        if info.st_size > config.max_bytes:
            raise SecretError(f"{path} is larger than maxBytes ({config.max_bytes})")
        try:
            return path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise SecretError(f"cannot read {path}: {exc.__class__.__name__}") from None


def _check_private(path: Path, info: os.stat_result) -> None:
    """Refuse a secrets file others could read or change: not ours (or root's), or mode & 077."""
    if not stat.S_ISREG(info.st_mode):
        raise SecretError(f"{path} is not a regular file")
    if info.st_uid not in (os.getuid(), 0):
        raise SecretError(f"{path} belongs to another user (uid {info.st_uid})")
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        raise SecretError(f"{path} is readable or writable by group or others (mode {mode:04o}); "
                          f"run chmod 600 {path}")


def _strip_newline(text: str) -> str:
    return text[:-2] if text.endswith("\r\n") else text[:-1] if text.endswith("\n") else text


def _json_pointer(document: Any, pointer: str) -> Any:
    """RFC 6901: `/a/b~1c` → document["a"]["b/c"]; list indexes are decimal.

    Not the `jsonpointer` package: its errors quote the document, and this one holds secrets.
    """
    current = document
    for raw in pointer.split("/")[1:]:
        part = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(current, dict) and part in current:
            current = current[part]
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            raise SecretError(f"{pointer} is not in the file")
    return current


def _from_exec(provider: _Named, ref_id: str, env: Mapping[str, str]) -> str:
    """Run the provider's command (no shell) with the JSON request on stdin, within its limits."""
    config = provider.config
    command = str(expand_user(config.command or "", env))
    _check_command(command)
    request = {"protocolVersion": PROTOCOL_VERSION, "provider": provider.name, "ids": [ref_id]}
    child_env = {name: env[name] for name in config.pass_env if name in env}
    output = _run_capped(
        [command, *config.args], json.dumps(request).encode(), child_env,
        timeout_s=config.timeout_ms / 1000, max_bytes=config.max_output_bytes)
    if not config.json_only:
        try:
            return _strip_newline(output.decode("utf-8"))
        except UnicodeDecodeError:
            raise SecretError(f"{command} printed something that is not UTF-8 text") from None
    return _protocol_value(command, output, ref_id)


def _check_command(command: str) -> None:
    try:
        info = os.stat(command)
    except OSError as exc:
        raise SecretError(f"cannot run {command}: {exc.strerror or exc.__class__.__name__}") from None
    if not stat.S_ISREG(info.st_mode) or not os.access(command, os.X_OK):
        raise SecretError(f"{command} is not an executable file")
    if stat.S_IMODE(info.st_mode) & 0o022:
        raise SecretError(f"{command} is writable by group or others; run chmod go-w {command}")


def _run_capped(argv: list[str], stdin: bytes, env: dict[str, str], *, timeout_s: float,
                max_bytes: int) -> bytes:
    """Run `argv` in its own process group; its stdout, or SecretError on a time limit, too much
    output or a non-zero exit. The whole group is killed when it overruns."""
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, env=env, start_new_session=True)
    except OSError as exc:
        raise SecretError(f"cannot run {argv[0]}: {exc.strerror or exc.__class__.__name__}") from None
    assert proc.stdin is not None and proc.stdout is not None
    deadline = time.monotonic() + timeout_s
    chunks: list[bytes] = []
    size = 0
    try:
        try:
            proc.stdin.write(stdin)
            proc.stdin.close()
        except BrokenPipeError:
            pass  # it exited without reading: its exit code says what happened
        fd = proc.stdout.fileno()
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise SecretError(f"{argv[0]} did not finish within timeoutMs ({round(timeout_s * 1000)} ms)")
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            size += len(chunk)
            if size > max_bytes:
                raise SecretError(f"{argv[0]} printed more than maxOutputBytes ({max_bytes})")
            chunks.append(chunk)
        try:
            code = proc.wait(timeout=max(deadline - time.monotonic(), 0.01))
        except subprocess.TimeoutExpired:
            raise SecretError(f"{argv[0]} did not finish within timeoutMs "
                              f"({round(timeout_s * 1000)} ms)") from None
    except BaseException:
        _kill_group(proc)
        raise
    finally:
        proc.stdout.close()
    if code != 0:
        raise SecretError(f"{argv[0]} exited with code {code}")
    return b"".join(chunks)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()
    proc.wait()


def _protocol_value(command: str, output: bytes, ref_id: str) -> str:
    try:
        answer = json.loads(output)
    except ValueError:
        raise SecretError(f"{command} did not print a JSON answer (set jsonOnly: false for raw "
                          "output)") from None
    if not isinstance(answer, dict) or answer.get("protocolVersion") != PROTOCOL_VERSION:
        raise SecretError(f"{command} did not answer with protocolVersion {PROTOCOL_VERSION}")
    values = answer.get("values")
    if isinstance(values, dict) and isinstance(values.get(ref_id), str):
        return str(values[ref_id])
    errors = answer.get("errors")
    error = errors.get(ref_id) if isinstance(errors, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        message = " ".join(error["message"].split())[:_MESSAGE_LIMIT]
        raise SecretError(f"{command} reported for {ref_id}: {message}")
    raise SecretError(f"{command} returned no string value for {ref_id}")
