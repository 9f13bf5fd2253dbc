"""Filesystem locations: state directory, call store directory and the control-API token file.

All functions take the environment as a mapping so tests (and embedders) never touch the real
home directory.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from collections.abc import Mapping
from pathlib import Path

from voicecall.config.schema import VoiceCallConfig

__all__ = [
    "CONTROL_TOKEN_FILENAME",
    "expand_user",
    "home_dir",
    "resolve_control_token",
    "state_dir",
    "store_dir",
]

CONTROL_TOKEN_FILENAME = "gateway.token"


def _env(env: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if env is None else env


def home_dir(env: Mapping[str, str] | None = None) -> Path:
    """`$HOME` from `env` when set, else the user's home directory."""
    home = _env(env).get("HOME")
    return Path(home) if home else Path.home()


def expand_user(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Path:
    """Expand a leading `~` using `env`'s HOME (`~user` falls back to the OS lookup)."""
    text = os.fspath(path)
    if text == "~":
        return home_dir(env)
    if text.startswith("~/") or text.startswith("~" + os.sep):
        return home_dir(env) / text[2:]
    if text.startswith("~"):
        return Path(os.path.expanduser(text))
    return Path(text)


def state_dir(env: Mapping[str, str] | None = None) -> Path:
    """`$OPENCLAW_STATE_DIR`, else `~/.openclaw`."""
    configured = _env(env).get("OPENCLAW_STATE_DIR")
    if configured:
        return expand_user(configured, env)
    return home_dir(env) / ".openclaw"


def store_dir(cfg: VoiceCallConfig, env: Mapping[str, str] | None = None) -> Path:
    """The call store directory: `store` (with `~` expanded), else `<stateDir>/voice-calls`."""
    if cfg.store:
        return expand_user(cfg.store, env)
    return state_dir(env) / "voice-calls"


def _ensure_state_dir(directory: Path) -> None:
    if not directory.exists():
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)


def _read_token(path: Path) -> str | None:
    try:
        token = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    if not token:
        return None
    # Our own secret file: keep it private even if something loosened its mode.
    with contextlib.suppress(OSError):
        if stat.S_IMODE(path.stat().st_mode) & 0o077:
            path.chmod(0o600)
    return token


def _write_new_file(path: Path, data: bytes) -> None:
    """Create `path` exclusively with mode 0600 and write `data` (FileExistsError if present)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    finally:
        os.close(fd)


def _publish_token(path: Path, token: str) -> None:
    """Make `path` hold `token` atomically: readers see either no file or the whole token.

    The token is written to a private temporary file and hard-linked into place, so the final
    name never exists half-written; the link fails if another process published first.
    An existing empty file is replaced.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    _write_new_file(tmp, (token + "\n").encode("utf-8"))
    try:
        try:
            os.link(tmp, path)
        except FileExistsError:
            if _read_token(path) is not None:
                raise
            os.replace(tmp, path)  # an empty or blank token file: replace it
        except OSError:
            # Filesystems without hard links: fall back to an exclusive create.
            _write_new_file(path, (token + "\n").encode("utf-8"))
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def resolve_control_token(cfg: VoiceCallConfig, env: Mapping[str, str] | None = None) -> str:
    """The control-API bearer token.

    `control.token` when configured; else the token in `<stateDir>/gateway.token`; else a new
    random token written there with mode 0600 (state dir created with mode 0700), so the gateway
    and the CLI agree on it without configuration.
    """
    if cfg.control.token is not None:
        return cfg.control.token.get_secret_value()
    directory = state_dir(env)
    path = directory / CONTROL_TOKEN_FILENAME
    existing = _read_token(path)
    if existing is not None:
        return existing
    _ensure_state_dir(directory)
    token = secrets.token_urlsafe(32)
    try:
        _publish_token(path, token)
    except FileExistsError:
        winner = _read_token(path)
        if winner is not None:
            return winner
        raise
    return token
