"""The audit trail kept beyond a gateway's container: before `up` recreates the gateway or
`down` (or anything else) removes it, its log goes to the project's .chromactl/audit/
(folder 0700, files 0600, each written atomically), bounded by audit.to_prune. A restart
keeps the container and its log, so nothing is archived then.

One file per removed gateway, named `<UTC time of archiving>-<container id>.jsonl`, holding
the lines its stdout held (audit lines, and whatever else was there: the reader skips it).
Archived twice (a removal that failed after its archive), the later file replaces the
earlier; while a container of that id still runs, its live log is read instead."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from chromactl import fsio
from chromactl.audit import split_lines, to_prune
from chromactl.engine_api import ContainerInfo, Engine
from chromactl.errors import ChromactlError
from chromactl.project import project_lock
from chromactl.spec import LABEL_SERVICE

AUDIT_DIR = ".chromactl/audit"
SUFFIX = ".jsonl"
FILE_MODE, DIR_MODE = 0o600, 0o700
ID_LENGTH = 12  # of the container id in a file's name, as `docker ps` shows it


@dataclass(frozen=True)
class ArchiveFile:
    path: Path
    container_id: str  # the first ID_LENGTH characters


def archive_name(container_id: str, when: float) -> str:
    stamp = datetime.fromtimestamp(when, timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    return f"{stamp}-{container_id[:ID_LENGTH]}{SUFFIX}"


def archive_files(root: Path) -> list[ArchiveFile]:
    """The archive's files, oldest first."""
    folder = root / AUDIT_DIR
    fsio.check_inside(root, folder)
    if not folder.is_dir():
        return []
    found = []
    for path in sorted(folder.iterdir()):
        stem = path.name[:-len(SUFFIX)] if path.name.endswith(SUFFIX) else None
        if stem and "-" in stem and not path.name.startswith("."):
            found.append(ArchiveFile(path, stem.rsplit("-", 1)[1]))
    return found


def archived_lines(root: Path, skip_ids: set[str] = frozenset()) -> Iterator[str]:
    """Every line of the archive, oldest file first; files of containers in `skip_ids`
    (still there, so their live log holds the same lines) are left out."""
    skipped = {i[:ID_LENGTH] for i in skip_ids}
    for archive in archive_files(root):
        if archive.container_id in skipped:
            continue
        text = fsio.read_text(archive.path, root)
        if text:
            yield from text.splitlines()


def archive_log(engine: Engine, root: Path, container: ContainerInfo, now: float | None = None) -> Path | None:
    """Copy the container's stdout (the gateway's audit lines) into the archive; None when
    it holds nothing. The oldest files go once the archive is over its bound."""
    text = "".join(line + "\n" for line in split_lines(engine.stdout_log(container.name)) if line.strip())
    if not text:
        return None
    folder = root / AUDIT_DIR
    path = folder / archive_name(container.id, time.time() if now is None else now)
    with project_lock(root):
        fsio.ensure_dir(folder, DIR_MODE, root=root)
        try:
            os.chmod(folder, DIR_MODE)  # made earlier, or under another umask: 0700 all the same
            fsio.write_files({path: (text, FILE_MODE)}, root)
            for older in archive_files(root):
                if older.container_id == container.id[:ID_LENGTH] and older.path != path:
                    older.path.unlink(missing_ok=True)
            sizes = [(a.path.name, a.path.stat().st_size) for a in archive_files(root)]
            for name in to_prune(sizes):
                (folder / name).unlink(missing_ok=True)
        except OSError as exc:
            raise ChromactlError(f"cannot write {folder}: {os.strerror(exc.errno or 0).lower()}") from None
    return path


def remove_gateway(engine: Engine, root: Path, container: ContainerInfo, *, archive_required: bool = True) -> None:
    """Remove a container, a gateway's log archived first. When the archive cannot be
    written the gateway is kept (its audit trail would be lost), unless the removal matters
    more (`archive_required` False: a server found open goes whatever happens)."""
    if container.labels.get(LABEL_SERVICE) == "gateway":
        engine.stop(container.name)  # a stopping nginx writes out the lines it buffers (up to a second's)
        try:
            archive_log(engine, root, container)
        except ChromactlError as exc:
            if archive_required:
                raise ChromactlError(f"cannot archive the audit trail of {container.name} before removing it "
                                     f"({exc.message}); it is kept",
                                     hint=f"make {root / AUDIT_DIR} writable (or free space), then run it again") \
                    from None
    engine.remove(container.name)
