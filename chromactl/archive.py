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
import pickle
import shutil
import sqlite3
import stat
import tarfile
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import IO, Callable, Iterable, Iterator

from chromactl.chroma_schema import first_difference, normalized
from chromactl.errors import ChromactlError
from chromactl.fingerprint import KNOWN, DataRelease, describe
from chromactl.images import IMAGE_REFERENCE

FORMAT = "chromactl-backup/1"
ROOT = "chromactl-backup"
MANIFEST = f"{ROOT}/manifest.json"
PAYLOAD = f"{ROOT}/data.tar"
PROJECT = f"{ROOT}/project"
SQLITE = "chroma.sqlite3"
PICKLE = "index_metadata.pickle"  # an HNSW segment's id maps: Chroma 0.6 unpickles it at start
CHUNK = 1024 * 1024
MANIFEST_LIMIT = 64 * 1024 * 1024  # some 500,000 collections
# Any read of a chroma.sqlite3 stops after this many SQLite VM steps. Counting records costs
# about 10 steps each (measured on 1.5.9 data with a million records: 0.17 s), so this
# allows some 100 million; a query that never ends (a recursive view) stops within a minute.
SQLITE_STEPS = 1_000_000_000


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


def inspect_sqlite(path: Path, *, strict: bool = False) -> tuple[dict[str, int], list[dict]]:
    """(fingerprint, collections with their record counts) of a chroma.sqlite3 on this host,
    opened read-only with every read bounded (SQLITE_STEPS). With `strict` (a backup to
    restore), its schema must be exactly a known release's, compared before any other query,
    so that no trigger, view or table of someone else's runs here or later in Chroma; and its
    migrations must be that release's."""
    try:
        regular = stat.S_ISREG(os.lstat(path).st_mode)
    except OSError as exc:
        raise ChromactlError(f"cannot open {SQLITE}: {exc.strerror}") from None
    if not regular:
        raise ChromactlError(f"{SQLITE} is not a regular file: not a database Chroma wrote")
    try:
        db = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro&immutable=1", uri=True)
    except sqlite3.Error as exc:
        raise ChromactlError(f"cannot open {SQLITE}: {exc}") from None
    spent = [0]

    def tick() -> bool:  # true: SQLite interrupts the statement
        spent[0] += 1000
        return spent[0] > SQLITE_STEPS

    db.set_progress_handler(tick, 1000)
    try:
        release = _known_release(db) if strict else None
        fingerprint = dict(db.execute("SELECT dir, MAX(version) FROM migrations GROUP BY dir").fetchall())
        rows = db.execute(
            "SELECT d.tenant_id, d.name, c.name, COUNT(e.id) FROM collections c "
            "JOIN databases d ON d.id = c.database_id "
            "LEFT JOIN segments s ON s.collection = c.id AND s.scope = 'METADATA' "
            "LEFT JOIN embeddings e ON e.segment_id = s.id "
            "GROUP BY c.id ORDER BY d.tenant_id, d.name, c.name").fetchall()
    except sqlite3.Error as exc:
        if spent[0] > SQLITE_STEPS:
            raise ChromactlError(f"reading {SQLITE} took more than {SQLITE_STEPS:,} steps: "
                                 "not a database Chroma wrote") from None
        raise ChromactlError(f"{SQLITE} is not a Chroma database this chromactl can read: {exc}") from None
    finally:
        db.close()
    if not all(isinstance(folder, str) and type(version) is int for folder, version in fingerprint.items()) or \
            not all(isinstance(text, str) for row in rows for text in row[:3]):
        raise ChromactlError(f"{SQLITE} holds values of types Chroma does not write (migrations or names)")
    if release and fingerprint != release.fingerprint:
        raise ChromactlError(f"{SQLITE} has the schema of {release.label} data but not its migrations "
                             f"({describe(fingerprint)})")
    return fingerprint, [{"tenant": t, "database": d, "name": n, "count": c} for t, d, n, c in rows]


def _known_release(db: sqlite3.Connection) -> DataRelease:
    """The release whose schema (every row of sqlite_master) the database has, exactly."""
    found = {normalized(row) for row in db.execute("SELECT type, name, tbl_name, sql FROM sqlite_master")}
    release = next((r for r in KNOWN if r.schema == found), None)
    if release is None:
        closest = min(KNOWN, key=lambda r: len(r.schema ^ found))
        raise ChromactlError(f"{SQLITE} is not what Chroma writes: {first_difference(found, closest.schema)} "
                             f"(compared with {closest.label}'s schema)")
    return release


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
    """The manifest of a backup that holds what Chroma writes and what its manifest says, or
    a refusal. Read once: the payload's sha256 is the manifest's; its members are only
    regular files and folders, once each, inside the data folder (_clean_members); every
    index_metadata.pickle names no code; its chroma.sqlite3 (copied to `workdir` for
    restore_payload) has a known release's exact schema and the manifest's fingerprint,
    collections and counts."""
    sqlite_copy = workdir / SQLITE
    with open_backup(path) as tar:
        manifest = _read_manifest(tar, path)
        with _reading(path):
            for clean, data in _verified_members(tar, path, manifest):
                if clean.name == SQLITE:
                    with open(sqlite_copy, "wb") as copy:
                        shutil.copyfileobj(data, copy, CHUNK)
                elif PurePosixPath(clean.name).name == PICKLE:
                    _check_pickle(data, path, clean.name)
    if not sqlite_copy.exists():
        raise ChromactlError(f"{path} holds no {SQLITE}")
    try:
        fingerprint, collections = inspect_sqlite(sqlite_copy, strict=True)
    except ChromactlError as exc:
        raise ChromactlError(f"{path}: {exc.message}", hint="nothing was changed; use another backup") from None
    if (fingerprint, collections, sum(c["count"] for c in collections)) != \
            (manifest.get("fingerprint"), manifest.get("collections"), manifest.get("records")):
        raise ChromactlError(f"{path}: the data does not match its manifest (fingerprint or counts differ)",
                             hint="nothing was changed; use another backup")
    return manifest


@contextmanager
def restore_payload(path: Path, workdir: Path, manifest: dict) -> Iterator[IO[bytes]]:
    """What the engine extracts into a new volume, as a readable file: not the backup's own
    tar but one written anew from the members verify_backup passed (normalized names, folders
    0755 and files 0644, owner root), with the chroma.sqlite3 it checked. The backup is read
    again as it streams: should its sha256 no longer be the manifest's, the stream fails
    before its end, and the engine with it."""
    with open_backup(path) as tar:
        yield io.BufferedReader(ChunkReader(_clean_tar(tar, path, manifest, workdir / SQLITE)), CHUNK)


def _read_manifest(tar: tarfile.TarFile, path: Path) -> dict:
    try:
        info = tar.getmember(MANIFEST)
        if not (_plain(info) and info.size <= MANIFEST_LIMIT and _plain(tar.getmember(PAYLOAD))):
            raise ValueError
        manifest = json.load(tar.extractfile(info))
    except (KeyError, ValueError, RecursionError, tarfile.TarError, OSError):
        raise ChromactlError(f"{path} is not a chromactl backup (no readable {MANIFEST} and {PAYLOAD})") from None
    if not isinstance(manifest, dict):
        raise ChromactlError(f"{path} is not a chromactl backup ({MANIFEST} is not an object)")
    if manifest.get("format") != FORMAT:
        raise ChromactlError(f"{path}: unknown backup format {manifest.get('format')!r} (this chromactl reads {FORMAT})")
    image, created = manifest.get("image"), manifest.get("created")
    if not (isinstance(image, str) and IMAGE_REFERENCE.fullmatch(image) and isinstance(created, str)):
        raise ChromactlError(f"{path}: the manifest names no valid image or time", hint="use another backup")
    return manifest


def _plain(member: tarfile.TarInfo) -> bool:
    """A regular file whose bytes are all in the archive (a sparse one could claim petabytes)."""
    return member.isreg() and member.sparse is None


@contextmanager
def _reading(path: Path) -> Iterator[None]:
    try:
        yield
    except (tarfile.TarError, OSError) as exc:
        raise ChromactlError(f"{path} is damaged: {exc}", hint="use another backup") from None


def _verified_members(tar: tarfile.TarFile, path: Path,
                      manifest: dict) -> Iterator[tuple[tarfile.TarInfo, IO | None]]:
    """The payload's members in one pass, as (the header to hand on, the member's data or None
    for a folder); after the last one the payload's sha256 must be the manifest's."""
    reader = _HashingReader(tar.extractfile(PAYLOAD))
    with tarfile.open(fileobj=reader, mode="r|") as payload:
        for clean, member in _clean_members(payload, path):
            yield clean, payload.extractfile(member) if clean.isfile() else None
    for _ in iter(lambda: reader.read(CHUNK), b""):
        pass  # the end of the payload counts in its sha256 too
    expected = manifest["payload"].get("sha256") if isinstance(manifest.get("payload"), dict) else None
    if reader.sha256.hexdigest() != expected:
        raise ChromactlError(f"{path} is damaged: the data's sha256 is {reader.sha256.hexdigest()[:16]}..., the "
                             f"manifest says {str(expected)[:16]}...", hint="nothing was changed; use another backup")


_KINDS = {tarfile.SYMTYPE: "a symbolic link", tarfile.LNKTYPE: "a hard link", tarfile.CHRTYPE: "a character device",
          tarfile.BLKTYPE: "a block device", tarfile.FIFOTYPE: "a FIFO"}


def _clean_members(payload: Iterable[tarfile.TarInfo], path: Path) -> Iterator[tuple[tarfile.TarInfo, tarfile.TarInfo]]:
    """Each member of a payload with the header chromactl hands the engine in its place: its
    name normalized, a folder 0755 or a file 0644, owned by root. Refused: what _never_written
    names."""
    seen: dict[str, bool] = {}  # normalized name -> is a folder
    for member in payload:
        parts = [part for part in member.name.split("/") if part not in ("", ".")]
        if not parts and member.isdir() and not member.name.startswith("/"):
            continue  # the folder itself: the volume's root keeps its own owner and mode
        why = _never_written(member, parts, seen)
        if why:
            raise ChromactlError(f"{path}: refusing {why}: {member.name!r} (Chroma writes only regular files and "
                                 "folders, once each)", hint="nothing was changed; use another backup")
        name = "/".join(parts)
        seen[name] = member.isdir()
        clean = tarfile.TarInfo(name)
        clean.type, clean.mode = (tarfile.DIRTYPE, 0o755) if member.isdir() else (tarfile.REGTYPE, 0o644)
        clean.size = 0 if member.isdir() else member.size
        clean.mtime = int(member.mtime) if 0 <= member.mtime < 8 ** 11 else 0
        yield clean, member


def _never_written(member: tarfile.TarInfo, parts: list[str], seen: dict[str, bool]) -> str | None:
    """Why Chroma cannot have written this member, if so."""
    name = "/".join(parts)
    if member.name.startswith("/") or ".." in parts:
        return "a name that leaves the data folder"
    if member.sparse is not None:  # its size can claim petabytes that are not in the file
        return "a sparse file"
    if not (member.isdir() or member.isreg()):
        return _KINDS.get(member.type, f"an entry of type {member.type!r}")
    if not name:
        return "an empty name"
    if not member.name.isprintable():
        return "a name with control characters"
    if member.mode & 0o7000:
        return "setuid, setgid or sticky mode bits"
    if name in seen:  # the engine would extract the last of them, not the one checked
        return "a second member of the same name"
    if name.startswith(SQLITE) and name != SQLITE:  # SQLite would replay it into the checked database
        return "a SQLite journal beside chroma.sqlite3"
    if any(seen.get("/".join(parts[:i])) is False for i in range(1, len(parts))):
        return "a member below a file"
    return None


def _clean_tar(tar: tarfile.TarFile, path: Path, manifest: dict, sqlite_copy: Path) -> Iterator[bytes]:
    with _reading(path):
        for clean, data in _verified_members(tar, path, manifest):
            if clean.name == SQLITE:
                with open(sqlite_copy, "rb") as checked:
                    clean.size = os.fstat(checked.fileno()).st_size
                    yield from _tar_entry(clean, checked)
            else:
                yield from _tar_entry(clean, data)
        yield tarfile.NUL * (2 * tarfile.BLOCKSIZE)


def _tar_entry(header: tarfile.TarInfo, data: IO[bytes] | None) -> Iterator[bytes]:
    yield header.tobuf(tarfile.PAX_FORMAT)
    if data is not None:
        yield from iter(lambda: data.read(CHUNK), b"")
        yield tarfile.NUL * (-header.size % tarfile.BLOCKSIZE)


class _HashingReader(io.RawIOBase):
    def __init__(self, source: IO[bytes]):
        self._source = source
        self.sha256 = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, target) -> int:
        data = self._source.read(len(target))
        target[:len(data)] = data
        self.sha256.update(data)
        return len(data)


class _StandIn:
    """What the one class an index_metadata.pickle may name becomes while it is checked."""


class _PickleCheck(pickle.Unpickler):
    """Loads an index_metadata.pickle without running anything it names. Chroma 0.6 loads it
    with pickle.load, which calls whatever a file names; 0.6 itself writes only its
    PersistentData, and 1.x plain dicts (measured on both images)."""

    def find_class(self, module: str, name: str):
        if (module, name) != ("chromadb.segment.impl.vector.local_persistent_hnsw", "PersistentData"):
            raise pickle.UnpicklingError(f"it names {module}.{name}"[:200])
        return _StandIn


def _check_pickle(data: IO[bytes], path: Path, name: str) -> None:
    try:
        _PickleCheck(data).load()
    except Exception as exc:  # whatever a hostile pickle raises is a refusal; its code never ran
        raise ChromactlError(f"{path}: refusing {name!r}: not the pickle Chroma writes ({exc})",
                             hint="nothing was changed; use another backup") from None


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
