"""A project's data volumes: read one out while Chroma is stopped, fill a new one, read
a running server's chroma.sqlite3, sizes. Every copy goes through a container that is
created and never started (no network, the project's own image: no extra image or tool).
Below the commands: backup, restore, upgrade and status use it."""

from __future__ import annotations

import os
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from chromactl import archive
from chromactl.deploy import Deployed, deploy, owned_container, resolve_data_path
from chromactl.engine_api import Engine, NoSuchImage
from chromactl.errors import ChromactlError
from chromactl.probe import Prober
from chromactl.project import Project
from chromactl.records import begin_operation, end_operation
from chromactl.spec import LABEL_PROJECT, container_name


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


class stopped:
    """Chroma stopped inside the block (if it ran), started again and proven after it, even
    when the block fails (Ctrl-C included). `downtime` is the seconds from stop to a proven
    heartbeat; set `restart = False` inside the block when something else takes over. With
    `journal` (what the operation is), the intent is on disk before the stop and gone once
    Chroma runs again: a run killed in between is finished by the next (chromactl.recovery)."""

    def __init__(self, engine: Engine, project: Project, reporter, timeout: float, prober: Prober | None = None,
                 journal: dict | None = None):
        self.engine, self.project, self.reporter, self.timeout, self.prober = engine, project, reporter, timeout, prober
        self.journal = journal
        self.downtime: float | None = None
        self.deployed: Deployed | None = None
        self.restart = True

    def __enter__(self) -> "stopped":
        name = container_name(self.project.settings)
        info = owned_container(self.engine, self.project.root, name)
        self.running = info is not None and info.state == "running"
        self._since = time.monotonic()
        if self.journal is not None:
            begin_operation(self.project.root, {**self.journal, "running": self.running})
        if self.running:
            self.reporter.step(f"stopping {name} (a copy taken while Chroma writes is not consistent)")
            try:
                self.engine.stop(name, timeout=30)
            except BaseException:  # interrupted while stopping: the engine goes on stopping it, so
                self.engine.stop(name, timeout=30)  # let it finish, then start it again all the same
                self.__exit__(None, None, None)
                raise
        return self

    def __exit__(self, *exc) -> None:
        if self.running and self.restart:
            self.reporter.step(f"starting {container_name(self.project.settings)} again")
            self.deployed = deploy(self.project, self.engine, self.reporter, pull="never", timeout=self.timeout,
                                   prober=self.prober)
            self.downtime = time.monotonic() - self._since
        if self.journal is not None:
            end_operation(self.project.root)  # Chroma runs again, or never ran


def holder_name(project: Project) -> str:
    return f"{container_name(project.settings)}-data-holder"


def new_volume_name(project: Project) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    return f"chromactl-{project.settings.name}-data-{stamp}-{secrets.token_hex(2)}"


def image_data_path(engine: Engine, project: Project, image: str) -> tuple[str, str]:
    """(where the image keeps its data, the image's id); the image must be present. The
    project's data_path applies to its own image only."""
    info = engine.image(image)
    if info is None:
        raise NoSuchImage(f"image {image} is not present", hint="`chromactl up` pulls it, or `docker pull` it")
    explicit = project.settings.data_path if image == project.settings.image else None
    return resolve_data_path(engine, project, image, info, explicit), info.id


def spool_volume(engine: Engine, project: Project, volume: str, work: Path, reporter,
                 image: str | None = None) -> Spooled:
    """Read a (quiet) volume's data folder into work/data.tar, through a holder container
    of `image` (default: the project's) that is never started."""
    image = image or project.settings.image
    if not engine.volume_exists(volume):
        raise ChromactlError(f"there is no data volume {volume}", hint="nothing to copy: has `chromactl up` run?")
    path, image_id = image_data_path(engine, project, image)
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


def fill_volume(engine: Engine, project: Project, volume: str, image: str, payload_opener: Callable,
                reporter) -> str:
    """A new volume holding the payload, at `image`'s data path. Returns that path."""
    path, _ = image_data_path(engine, project, image)
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


def volume_fingerprint(engine: Engine, project: Project, volume: str, image: str, work: Path) -> dict[str, int]:
    """The data fingerprint of a volume that no server runs on, read through a holder."""
    path, _ = image_data_path(engine, project, image)
    holder = holder_name(project)
    engine.create_holder(holder, image, volume, path, {LABEL_PROJECT: str(project.root)})
    try:
        archive.extract_single(engine.archive_out(holder, f"{path}/{archive.SQLITE}"), work / "old.sqlite3")
    finally:
        engine.remove(holder)
    return archive.inspect_sqlite(work / "old.sqlite3")[0]


def live_fingerprint(engine: Engine, container: str, path: str, work: Path) -> tuple[dict[str, int], list[dict]]:
    """Fingerprint and counts of a running server's chroma.sqlite3 (read while it is quiet)."""
    target = work / "live.sqlite3"
    chunks = engine.archive_out(container, f"{path}/{archive.SQLITE}")
    archive.extract_single(chunks, target)
    try:
        return archive.inspect_sqlite(target)
    finally:
        target.unlink(missing_ok=True)


def volume_bytes(engine: Engine, volume: str | None) -> int | None:
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
