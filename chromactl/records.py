"""What chromactl remembers between runs, in .chromactl/: what the running server was last
given (so that a revocation that has not reached it is known), the last backup (for
`status`), the last upgrade (for `upgrade --rollback`) and the tenants `tenant add` made
(for `tenant list`: Chroma has no route that lists tenants). Small JSON files, 0600,
written atomically; none holds a secret."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from chromactl import fsio
from chromactl.project import STATE_DIR

OPERATION_FILE = f"{STATE_DIR}/operation.json"
SERVED_FILE = f"{STATE_DIR}/served.json"
DATA_FILE = f"{STATE_DIR}/data.json"
LAST_BACKUP_FILE = f"{STATE_DIR}/last-backup.json"
UPGRADE_FILE = f"{STATE_DIR}/upgrade.json"
TENANTS_FILE = f"{STATE_DIR}/tenants.json"


def _write(root: Path, name: str, note: dict[str, Any]) -> None:
    fsio.ensure_dir(root / STATE_DIR, 0o700, root=root)
    fsio.write_files({root / name: (json.dumps(note, indent=2) + "\n", 0o600)}, root)


def _read(root: Path, name: str) -> dict[str, Any] | None:
    text = fsio.read_text(root / name, root)
    if text is None:
        return None
    try:
        note = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: 100,000 nested lists
        return None
    return note if isinstance(note, dict) else None


def begin_operation(root: Path, note: dict[str, Any]) -> None:
    """What a multi-step operation (backup, restore, upgrade) is about to do, written before
    it starts: a run killed half-way is finished or put back by the next one (chromactl.recovery)."""
    _write(root, OPERATION_FILE, note)


def operation(root: Path) -> dict[str, Any] | None:
    return _read(root, OPERATION_FILE)


def end_operation(root: Path) -> None:
    (root / OPERATION_FILE).unlink(missing_ok=True)


def record_served(root: Path, digests: frozenset[str]) -> None:
    """The credentials (as credential_digests) the project's containers were last given;
    empty when none run (a new project, or after `down`)."""
    if served(root) != digests:
        _write(root, SERVED_FILE, {"credentials": sorted(digests)})


def served(root: Path) -> frozenset[str] | None:
    """What the containers were last given; None when unknown (a project from before this record)."""
    note = _read(root, SERVED_FILE)
    if note is None or not isinstance(note.get("credentials"), list):
        return None
    return frozenset(str(d) for d in note["credentials"])


def revocation_pending(root: Path, current: frozenset[str]) -> bool:
    """Whether a running server may still accept something the files no longer grant."""
    given = served(root)
    return given is None or bool(given - current)


def record_volume(root: Path, volume: str | None) -> None:
    """The volume the project's server last ran on, proven (None: forget it, e.g. deleted on purpose)."""
    if volume is None:
        (root / DATA_FILE).unlink(missing_ok=True)
    elif held_volume(root) != volume:
        _write(root, DATA_FILE, {"volume": volume})


def held_volume(root: Path) -> str | None:
    note = _read(root, DATA_FILE)
    return note.get("volume") if note else None


def record_backup(root: Path, output: Path, manifest: dict) -> None:
    """Remember the last backup, for `status`."""
    _write(root, LAST_BACKUP_FILE, {"path": str(output), "created": manifest["created"],
                                    "sha256": manifest["payload"]["sha256"], "records": manifest["records"],
                                    "volume": manifest["volume"]})


def last_backup(root: Path) -> dict | None:
    """The last backup's note, with its age in seconds; None when there is none."""
    note = _read(root, LAST_BACKUP_FILE)
    try:
        created = datetime.fromisoformat(note["created"])
    except (TypeError, KeyError, ValueError):
        return None
    note["age_seconds"] = max(0.0, (datetime.now(timezone.utc) - created).total_seconds())
    note["exists"] = Path(note.get("path", "")).is_file()
    return note


def record_upgrade(root: Path, note: dict[str, Any]) -> None:
    _write(root, UPGRADE_FILE, note)


def last_upgrade(root: Path) -> dict | None:
    return _read(root, UPGRADE_FILE)


def forget_upgrade(root: Path) -> None:
    (root / UPGRADE_FILE).unlink(missing_ok=True)


def record_tenant(root: Path, tenant: str) -> None:
    """A tenant `chromactl tenant add` made or found, for `tenant list`."""
    known = remembered_tenants(root)
    if tenant not in known:
        _write(root, TENANTS_FILE, {"tenants": sorted(known + (tenant,))})


def remembered_tenants(root: Path) -> tuple[str, ...]:
    note = _read(root, TENANTS_FILE)
    names = note.get("tenants") if note is not None else None
    return tuple(str(n) for n in names) if isinstance(names, list) else ()
