"""`chromactl backup`: a consistent archive of the instance's data.

Copies taken while Chroma writes are not consistent (chroma.sqlite3 and the HNSW segment
folders change apart), so the server is stopped, the volume streamed out through a
container that never runs (no network, no extra image), and the server started again
and proven by `up`'s own checks. The gateway keeps running meanwhile (clients get 502).

The volume helpers here are shared by restore and upgrade."""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from chromactl import __version__, archive, fsio
from chromactl.credentials import credential_file_names
from chromactl.envfile import ENV_FILE
from chromactl.errors import ChromactlError
from chromactl.fingerprint import describe, release_of
from chromactl.images import data_path
from chromactl.plan import owned_container
from chromactl.project import PROBE_SECRET_FILE, STATE_DIR, Project, load_project, project_lock
from chromactl.settings import SETTINGS_FILE
from chromactl.spec import LABEL_PROJECT, container_name, volume_name

LAST_BACKUP_FILE = f"{STATE_DIR}/last-backup.json"
BACKUP_DIR = "backups"
SUFFIX = ".chromactl-backup.tar"


@dataclass(frozen=True)
class BackupResult:
    path: Path
    manifest: dict
    size: int  # bytes of the backup file
    seconds: float  # the whole run
    downtime: float | None  # seconds from stop to a proven heartbeat; None: the server was not running
    credentials: bool


@dataclass(frozen=True)
class Spooled:
    """A data folder read out of a volume: the payload tar, its sha256 and what it holds."""

    payload: Path
    sha256: str
    size: int
    fingerprint: dict[str, int]
    collections: list[dict]
    data_path: str
    image_id: str | None


def backup(root: Path, output: Path | None, reporter, *, include_credentials: bool = False,
           timeout: float = 60) -> BackupResult:
    from chromactl.engine import Engine

    started_at = time.monotonic()
    project = load_project(root.absolute())
    root = project.root
    engine = Engine.connect()
    output = (output or default_output(project)).absolute()
    _check_output(output)
    with project_lock(root), tempfile.TemporaryDirectory(dir=output.parent, prefix=".chromactl-backup-") as work:
        with stopped(engine, project, reporter, timeout) as stop:
            spooled = spool_volume(engine, project, volume_name(project.settings), Path(work), reporter)
        manifest = build_manifest(project, spooled, include_credentials)
        files = project_files(project) if include_credentials else {}
        reporter.step(f"writing {output}")
        archive.write_backup(output, manifest, spooled.payload, files)
        record_backup(root, output, manifest)
    return BackupResult(output, manifest, output.stat().st_size, time.monotonic() - started_at, stop.downtime,
                        include_credentials)


def default_output(project: Project) -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    folder = project.root / BACKUP_DIR
    fsio.ensure_dir(folder, 0o700)
    return folder / f"{project.settings.name}-{stamp}{SUFFIX}"


def _check_output(output: Path) -> None:
    if output.exists():
        raise ChromactlError(f"{output} already exists", hint="name another file with -o FILE")
    if not output.parent.is_dir():
        raise ChromactlError(f"{output.parent} is not a folder")


class stopped:
    """Chroma stopped inside the block (if it ran), started again and proven after it, even
    when the block fails. `downtime` is the seconds from stop to a proven heartbeat."""

    def __init__(self, engine, project: Project, reporter, timeout: float):
        self.engine, self.project, self.reporter, self.timeout = engine, project, reporter, timeout
        self.downtime: float | None = None
        self.up_result = None

    def __enter__(self) -> "stopped":
        name = container_name(self.project.settings)
        info = owned_container(self.engine, self.project.root, name)
        self.running = info is not None and info.state == "running"
        self._since = time.monotonic()
        if self.running:
            self.reporter.step(f"stopping {name} (a copy taken while Chroma writes is not consistent)")
            self.engine.stop(name, timeout=30)
        return self

    def __exit__(self, *exc) -> None:
        if not self.running:
            return
        from chromactl.commands.up import up as run_up

        self.reporter.step(f"starting {container_name(self.project.settings)} again")
        self.up_result = run_up(self.project.root, self.reporter, pull="never", timeout=self.timeout)
        self.downtime = time.monotonic() - self._since


def holder_name(project: Project) -> str:
    return f"{container_name(project.settings)}-data-holder"


def image_data_path(engine, image: str) -> tuple[str, str | None]:
    """(where the image keeps its data, the image's id); the image must be present."""
    attrs = engine.image_attrs(image)
    if attrs is None:
        raise ChromactlError(f"image {image} is not present", hint="`chromactl up` pulls it, or `docker pull` it")
    return data_path(image, (attrs.get("Config") or {}).get("WorkingDir")), attrs.get("Id")


def spool_volume(engine, project: Project, volume: str, work: Path, reporter, image: str | None = None) -> Spooled:
    """Read a (quiet) volume's data folder into work/data.tar, through a holder container
    of `image` (default: the project's) that is never started."""
    image = image or project.settings.image
    if not engine.volume_exists(volume):
        raise ChromactlError(f"there is no data volume {volume}", hint="nothing to copy: has `chromactl up` run?")
    path, image_id = image_data_path(engine, image)
    holder = holder_name(project)
    engine.create_holder(holder, image, volume, path, {LABEL_PROJECT: str(project.root)})
    try:
        reporter.step(f"reading volume {volume}")
        payload, sqlite_copy = work / "data.tar", work / archive.SQLITE
        sha256, size = archive.spool_payload(engine.archive_out(holder, path), payload, sqlite_copy,
                                             reporter.transfer("read"))
        reporter.transfer_done()
    finally:
        engine.remove(holder)
    fingerprint, collections = archive.inspect_sqlite(sqlite_copy)
    sqlite_copy.unlink()
    return Spooled(payload, sha256, size, fingerprint, collections, path, image_id)


def fill_volume(engine, project: Project, volume: str, image: str, payload_opener: Callable, reporter) -> str:
    """A new volume holding the payload, at `image`'s data path. Returns that path."""
    path, _ = image_data_path(engine, image)
    engine.create_volume(volume, {LABEL_PROJECT: str(project.root)})
    holder = holder_name(project)
    engine.create_holder(holder, image, volume, path, {LABEL_PROJECT: str(project.root)})
    try:
        reporter.step(f"writing volume {volume}")
        with payload_opener() as payload:
            engine.archive_in(holder, path, payload)
    finally:
        engine.remove(holder)
    return path


def live_fingerprint(engine, container: str, path: str, work: Path) -> tuple[dict[str, int], list[dict]]:
    """Fingerprint and counts of a running server's chroma.sqlite3 (read while it is quiet)."""
    target = work / "live.sqlite3"
    chunks = engine.archive_out(container, f"{path}/{archive.SQLITE}")
    archive.extract_single(chunks, target)
    try:
        return archive.inspect_sqlite(target)
    finally:
        target.unlink(missing_ok=True)


def build_manifest(project: Project, spooled: Spooled, include_credentials: bool) -> dict:
    release = release_of(spooled.fingerprint)
    return {
        "format": archive.FORMAT,
        "chromactl_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "instance": project.settings.name,
        "image": project.settings.image,
        "image_id": spooled.image_id,
        "data_path": spooled.data_path,
        "volume": volume_name(project.settings),
        "fingerprint": spooled.fingerprint,
        "data": release.label if release else describe(spooled.fingerprint),
        "collections": spooled.collections,
        "records": sum(c["count"] for c in spooled.collections),
        "payload": {"file": archive.PAYLOAD, "sha256": spooled.sha256, "bytes": spooled.size},
        "consistent": "copied with the server stopped",
        "credentials": include_credentials,
    }


def project_files(project: Project) -> dict[str, bytes]:
    """The project's files, secrets included (only with --include-credentials)."""
    names = [SETTINGS_FILE, ENV_FILE, PROBE_SECRET_FILE, *credential_file_names(project.settings)]
    files = {}
    for name in names:
        path = project.root / name
        if path.is_file():
            files[name] = path.read_bytes()
    return files


def record_backup(root: Path, output: Path, manifest: dict) -> None:
    """Remember the last backup, for `status`."""
    note = {"path": str(output), "created": manifest["created"], "sha256": manifest["payload"]["sha256"],
            "records": manifest["records"], "volume": manifest["volume"]}
    fsio.ensure_dir(root / STATE_DIR, 0o700)
    fsio.write_files({root / LAST_BACKUP_FILE: (json.dumps(note, indent=2) + "\n", 0o600)})


def last_backup(root: Path) -> dict | None:
    """The last backup's note, with its age in seconds; None when there is none."""
    try:
        note = json.loads((root / LAST_BACKUP_FILE).read_text())
        created = datetime.fromisoformat(note["created"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    note["age_seconds"] = max(0.0, (datetime.now(timezone.utc) - created).total_seconds())
    note["exists"] = Path(note.get("path", "")).is_file()
    return note


def volume_bytes(engine, volume: str | None) -> int | None:
    """The size of a volume's files, read on this host (local driver, readable by us); None otherwise."""
    mountpoint = engine.volume_mountpoint(volume) if volume else None
    if not mountpoint or not os.access(mountpoint, os.R_OK | os.X_OK):
        return None
    total = 0
    for folder, _, files in os.walk(mountpoint):
        for name in files:
            try:
                total += os.lstat(os.path.join(folder, name)).st_size
            except OSError:
                pass
    return total
