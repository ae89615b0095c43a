"""`chromactl backup`: a consistent archive of the instance's data.

Copies taken while Chroma writes are not consistent (chroma.sqlite3 and the HNSW segment
folders change apart), so the server is stopped, the volume streamed out through a
container that never runs (chromactl.volumes), and the server started again and proven
by `up`'s own checks. The gateway keeps running meanwhile (clients get 502)."""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from chromactl import archive
from chromactl.backups import build_manifest, default_output, project_files
from chromactl.engine_api import Engine
from chromactl.errors import ChromactlError
from chromactl.project import load_project, project_lock
from chromactl.records import record_backup
from chromactl.recovery import recover
from chromactl.spec import volume_name
from chromactl.volumes import spool_volume, stopped


@dataclass(frozen=True)
class BackupResult:
    path: Path
    manifest: dict
    size: int  # bytes of the backup file
    seconds: float  # the whole run
    downtime: float | None  # seconds from stop to a proven heartbeat; None: the server was not running
    credentials: bool


def backup(root: Path, output: Path | None, connect: Callable[[], Engine], reporter, *,
           include_credentials: bool = False, timeout: float = 60) -> BackupResult:
    started_at = time.monotonic()
    project = load_project(root)
    engine = connect()
    output = (output or default_output(project)).absolute()
    _check_output(output)
    with project_lock(root), tempfile.TemporaryDirectory(dir=output.parent, prefix=".chromactl-backup-") as work:
        recover(root, engine, reporter, timeout=timeout)
        project = load_project(root)
        with stopped(engine, project, reporter, timeout, journal={"op": "backup", "work": work}) as stop:
            spooled = spool_volume(engine, project, volume_name(project.settings), Path(work), reporter)
        manifest = build_manifest(project, spooled, include_credentials)
        files = project_files(project) if include_credentials else {}
        reporter.step(f"writing {output}")
        archive.write_backup(output, manifest, spooled.payload, files)
        record_backup(root, output, manifest)
    return BackupResult(output, manifest, output.stat().st_size, time.monotonic() - started_at, stop.downtime,
                        include_credentials)


def _check_output(output: Path) -> None:
    if output.exists():
        raise ChromactlError(f"{output} already exists", hint="name another file with -o FILE")
    if not output.parent.is_dir():
        raise ChromactlError(f"{output.parent} is not a folder")
