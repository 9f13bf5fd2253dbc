"""`voicecall doctor [--fix]`: find legacy config keys (docs/decisions.md D37) and rewrite the file.

The loader already migrates legacy keys in memory (with a warning each time); `--fix` makes the
migration permanent. The original file is kept next to it as `<name>.bak`; the rewritten file is
plain JSON (JSON5 comments are not kept) with `${VAR}` references left as they were.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from voicecall.config.loader import _parse_json5
from voicecall.config.migrate import migrate_raw
from voicecall.config.schema import ConfigError, ConfigIssue

__all__ = ["DoctorReport", "check_config_file"]


@dataclass
class DoctorReport:
    path: str
    changes: list[str] = field(default_factory=list)
    fixed: bool = False
    backup: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "changes": self.changes, "fixed": self.fixed, "backup": self.backup}


def check_config_file(path: Path, *, fix: bool = False) -> DoctorReport:
    """What would change in `path`; with `fix`, back it up and write the migrated config."""
    raw = _parse_json5(path)
    if not isinstance(raw, dict):
        raise ConfigError([ConfigIssue(str(path), "the config file must hold a JSON object")], source=path)
    migrated, changes = migrate_raw(raw)
    report = DoctorReport(path=str(path), changes=changes)
    if not fix or not changes:
        return report
    backup = path.with_name(path.name + ".bak")
    shutil.copy2(path, backup)
    mode = path.stat().st_mode & 0o777
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(migrated, handle, indent=2, ensure_ascii=False)
            handle.write("\n")
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    report.fixed, report.backup = True, str(backup)
    return report
