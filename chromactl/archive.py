"""chromactl's backup file, and what a Chroma data folder holds. No Docker here: the
caller streams the volume in and out through chromactl.engine.

A backup is an uncompressed tar (HNSW vectors hardly compress; speed matters more while
the server is stopped) holding, in this order:

    chromactl-backup/manifest.json   format, chromactl version, image, data fingerprint,
                                     collections and counts, payload sha256, time
    chromactl-backup/data.tar        the data folder's files, relative to it
    chromactl-backup/project/...     only with --include-credentials: the project files

The fingerprint and counts come from chroma.sqlite3 read on this host with Python's
sqlite3 (the official 1.x image has no Python).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import sqlite3
import tarfile
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import IO, Callable, Iterable, Iterator

from chromactl.errors import ChromactlError

FORMAT = "chromactl-backup/1"
ROOT = "chromactl-backup"
MANIFEST = f"{ROOT}/manifest.json"
PAYLOAD = f"{ROOT}/data.tar"
PROJECT = f"{ROOT}/project"
SQLITE = "chroma.sqlite3"
CHUNK = 1024 * 1024


class ChunkReader(io.RawIOBase):
    """A readable file over an iterator of byte chunks (the engine's archive stream)."""

    def __init__(self, chunks: Iterable[bytes], on_bytes: Callable[[int], None] | None = None):
        self._chunks = iter(chunks)
        self._buffer = b""
        self._on_bytes = on_bytes
        self.total = 0

    def readable(self) -> bool:
        return True

    def readinto(self, target) -> int:
        while not self._buffer:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._buffer = chunk
            self.total += len(chunk)
            if self._on_bytes:
                self._on_bytes(self.total)
        size = min(len(target), len(self._buffer))
        target[:size] = self._buffer[:size]
        self._buffer = self._buffer[size:]
        return size


class _HashingWriter(io.RawIOBase):
    def __init__(self, handle: IO[bytes]):
        self._handle = handle
        self.sha256 = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self._handle.write(data)
        self.sha256.update(data)
        self.size += len(data)
        return len(data)


def spool_payload(chunks: Iterable[bytes], payload: Path, sqlite_copy: Path,
                  on_bytes: Callable[[int], None] | None = None) -> tuple[str, int]:
    """Write the engine's tar of a data folder (top entry: the folder itself) to `payload`
    with names relative to the folder, and a copy of its chroma.sqlite3 to `sqlite_copy`.
    Returns the payload's (sha256, size)."""
    reader = io.BufferedReader(ChunkReader(chunks, on_bytes), CHUNK)
    found = False
    with open(payload, "wb") as handle:
        writer = _HashingWriter(handle)
        with tarfile.open(fileobj=reader, mode="r|") as source, \
                tarfile.open(fileobj=writer, mode="w|", format=tarfile.PAX_FORMAT) as target:
            for member in source:
                name = _relative(member.name)
                if name is None:
                    continue  # the folder itself: the volume's root is the target's own
                member.name = name
                if member.islnk():
                    member.linkname = _relative(member.linkname) or member.linkname
                if not member.isfile():
                    target.addfile(member)
                    continue
                data = source.extractfile(member)
                if name == SQLITE:
                    found = True
                    with open(sqlite_copy, "wb") as copy:
                        shutil.copyfileobj(data, copy, CHUNK)
                    with open(sqlite_copy, "rb") as copy:
                        target.addfile(member, copy)
                else:
                    target.addfile(member, data)
        handle.flush()
        os.fsync(handle.fileno())
    if not found:
        raise ChromactlError(f"the data volume holds no {SQLITE}: nothing that Chroma wrote",
                             hint="has the server ever run on it? `chromactl status` names the volume")
    return writer.sha256.hexdigest(), writer.size


def _relative(name: str) -> str | None:
    parts = PurePosixPath(name).parts
    return str(PurePosixPath(*parts[1:])) if len(parts) > 1 else None


def inspect_sqlite(path: Path) -> tuple[dict[str, int], list[dict]]:
    """(fingerprint, collections with their record counts) of a chroma.sqlite3 on this host."""
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)
    except sqlite3.Error as exc:
        raise ChromactlError(f"cannot open {SQLITE}: {exc}") from None
    try:
        fingerprint = {folder: int(version) for folder, version in
                       db.execute("SELECT dir, MAX(version) FROM migrations GROUP BY dir")}
        rows = db.execute(
            "SELECT d.tenant_id, d.name, c.name, COUNT(e.id) FROM collections c "
            "JOIN databases d ON d.id = c.database_id "
            "LEFT JOIN segments s ON s.collection = c.id AND s.scope = 'METADATA' "
            "LEFT JOIN embeddings e ON e.segment_id = s.id "
            "GROUP BY c.id ORDER BY d.tenant_id, d.name, c.name").fetchall()
    except sqlite3.Error as exc:
        raise ChromactlError(f"{SQLITE} is not a Chroma database this chromactl can read: {exc}") from None
    finally:
        db.close()
    return fingerprint, [{"tenant": t, "database": d, "name": n, "count": c} for t, d, n, c in rows]


def counts_of(collections: list[dict]) -> dict[str, int]:
    return {f"{c['tenant']}/{c['database']}/{c['name']}": c["count"] for c in collections}


def write_backup(output: Path, manifest: dict, payload: Path, project_files: dict[str, bytes]) -> None:
    """The backup file, written next to `output` and renamed into place (mode 0600)."""
    fd, tmp = tempfile.mkstemp(dir=output.parent, prefix=f".{output.name}.", suffix=".partial")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as handle:
            with tarfile.open(fileobj=handle, mode="w", format=tarfile.PAX_FORMAT) as tar:
                _add_bytes(tar, MANIFEST, json.dumps(manifest, indent=2).encode() + b"\n")
                info = tar.gettarinfo(str(payload), arcname=PAYLOAD)
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                info.mode = 0o600
                with open(payload, "rb") as source:
                    tar.addfile(info, source)
                for name, content in sorted(project_files.items()):
                    _add_bytes(tar, f"{PROJECT}/{name}", content)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, output)
    except OSError as exc:
        raise ChromactlError(f"cannot write {output}: {os.strerror(exc.errno).lower() if exc.errno else exc}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _add_bytes(tar: tarfile.TarFile, name: str, content: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(content)
    info.mode = 0o600
    info.mtime = int(time.time())
    tar.addfile(info, io.BytesIO(content))


@contextmanager
def open_backup(path: Path) -> Iterator[tarfile.TarFile]:
    try:
        tar = tarfile.open(path, mode="r:")
    except FileNotFoundError:
        raise ChromactlError(f"no such backup file: {path}") from None
    except (tarfile.TarError, OSError) as exc:
        raise ChromactlError(f"{path} is not a chromactl backup ({exc})") from None
    try:
        yield tar
    finally:
        tar.close()


def verify_backup(path: Path, workdir: Path) -> dict:
    """The manifest of a backup whose payload is whole: its sha256 matches the manifest,
    every name stays inside the data folder, and the chroma.sqlite3 inside has the
    fingerprint and counts the manifest states. Anything else is refused."""
    with open_backup(path) as tar:
        try:
            manifest = json.load(tar.extractfile(MANIFEST))
            payload_info = tar.getmember(PAYLOAD)
        except (KeyError, ValueError, tarfile.TarError, OSError):
            raise ChromactlError(f"{path} is not a chromactl backup (no readable {MANIFEST} and {PAYLOAD})") from None
        if manifest.get("format") != FORMAT:
            raise ChromactlError(f"{path}: unknown backup format {manifest.get('format')!r} (this chromactl reads {FORMAT})")
        digest = hashlib.sha256()
        try:
            source = tar.extractfile(payload_info)
            for block in iter(lambda: source.read(CHUNK), b""):
                digest.update(block)
        except (tarfile.TarError, OSError) as exc:
            raise ChromactlError(f"{path} is damaged: {exc}", hint="use another backup") from None
        expected = manifest.get("payload", {}).get("sha256")
        if digest.hexdigest() != expected:
            raise ChromactlError(f"{path} is damaged: the data's sha256 is {digest.hexdigest()[:16]}..., the manifest "
                                 f"says {str(expected)[:16]}...", hint="nothing was changed; use another backup")
        sqlite_copy = workdir / SQLITE
        try:
            with tarfile.open(fileobj=tar.extractfile(payload_info), mode="r:") as payload:
                for member in payload:
                    parts = PurePosixPath(member.name).parts
                    if member.name.startswith("/") or ".." in parts or (member.issym() or member.islnk()) and (
                            member.linkname.startswith("/") or ".." in PurePosixPath(member.linkname).parts):
                        raise ChromactlError(f"{path}: refusing a name that leaves the data folder: {member.name!r}")
                    if member.isdev():  # a character or block device, or a FIFO: never in a data folder
                        raise ChromactlError(f"{path}: refusing a device or FIFO: {member.name!r}")
                    if member.name == SQLITE:
                        with open(sqlite_copy, "wb") as copy:
                            shutil.copyfileobj(payload.extractfile(member), copy, CHUNK)
        except tarfile.TarError as exc:
            raise ChromactlError(f"{path} is damaged: {exc}", hint="use another backup") from None
    if not sqlite_copy.exists():
        raise ChromactlError(f"{path} holds no {SQLITE}")
    fingerprint, collections = inspect_sqlite(sqlite_copy)
    if fingerprint != manifest.get("fingerprint") or counts_of(collections) != counts_of(manifest.get("collections", [])):
        raise ChromactlError(f"{path}: the data does not match its manifest (fingerprint or counts differ)",
                             hint="nothing was changed; use another backup")
    return manifest


@contextmanager
def payload_file(path: Path) -> Iterator[IO[bytes]]:
    """The payload tar of a backup as a readable, seekable file, for the engine."""
    with open_backup(path) as tar:
        yield tar.extractfile(PAYLOAD)


def extract_bytes(chunks: Iterable[bytes], limit: int = 1024 * 1024) -> bytes | None:
    """The one regular file of an engine archive, in memory (small files: at most `limit`)."""
    reader = io.BufferedReader(ChunkReader(chunks), CHUNK)
    with tarfile.open(fileobj=reader, mode="r|") as source:
        for member in source:
            if member.isfile() and member.size <= limit:
                return source.extractfile(member).read()
    return None


def holds_file(chunks: Iterable[bytes]) -> bool:
    """Whether an engine archive holds a regular file (read no further than its header)."""
    reader = io.BufferedReader(ChunkReader(chunks), CHUNK)
    with tarfile.open(fileobj=reader, mode="r|") as source:
        return any(member.isfile() for member in source)


def extract_single(chunks: Iterable[bytes], target: Path) -> None:
    """The one regular file of an engine archive (e.g. of /data/chroma.sqlite3), to `target`."""
    reader = io.BufferedReader(ChunkReader(chunks), CHUNK)
    with tarfile.open(fileobj=reader, mode="r|") as source:
        for member in source:
            if member.isfile():
                with open(target, "wb") as out:
                    shutil.copyfileobj(source.extractfile(member), out, CHUNK)
                return
    raise ChromactlError("the engine's archive held no file")
