"""The filesystem side: atomic writes of several files, and the project lock."""

from __future__ import annotations

import errno
import fcntl
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from chromactl.errors import ChromactlError


def _os_error(exc: OSError, path: Path) -> ChromactlError:
    reason = os.strerror(exc.errno) if exc.errno else str(exc)
    return ChromactlError(f"cannot write {path}: {reason.lower()}")


def read_text(path: Path) -> str | None:
    """The file's text, or None when it does not exist."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except UnicodeDecodeError:
        raise ChromactlError(f"{path.name}: not UTF-8 text") from None
    except OSError as exc:
        raise ChromactlError(f"cannot read {path}: {os.strerror(exc.errno).lower()}") from None


def write_files(files: dict[Path, tuple]) -> None:
    """Write every file (path -> (text, mode) or (text, mode, owner uid, group id)) or none.

    Each file is written to a temporary file in its own folder and flushed to disk; only
    when all are ready are they renamed over the originals, so a reader never sees a half
    written file. If a rename fails part-way, the files already replaced are put back from
    hard links kept for the purpose, so a failure (a full disk, an unwritable folder, a
    folder in the way) changes nothing.
    """
    staged: list[tuple[str, Path]] = []
    kept: list[tuple[Path, str | None]] = []  # replaced so far, with the link to its old content
    try:
        for path, (text, mode, *owner) in files.items():
            staged.append((_stage(path, text, mode, owner), path))
        for tmp, path in staged:
            old = _keep_old(path)
            try:
                os.replace(tmp, path)
            except OSError as exc:
                if old is not None:
                    os.unlink(old)
                raise _os_error(exc, path) from None
            kept.append((path, old))
        staged = []
        for folder in {path.parent for path in files}:
            _fsync_dir(folder)
    except BaseException:
        _restore(kept)
        kept = []
        raise
    finally:
        for tmp, _ in staged:
            _unlink(tmp)
        for _, old in kept:
            if old is not None:
                _unlink(old)


def _stage(path: Path, text: str, mode: int, owner: list) -> str:
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise _os_error(exc, path) from None
    try:
        if owner:
            os.fchown(fd, *owner)  # (uid, gid); -1 keeps one
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:
        _unlink(tmp)
        raise _os_error(exc, path) from None
    return tmp


def _keep_old(path: Path) -> str | None:
    """A hard link to the file's current content, or None when there is no such file."""
    old = f"{path.parent}/.{path.name}.{os.getpid()}.old"
    _unlink(old)
    try:
        os.link(path, old)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise _os_error(exc, path) from None
    return old


def _restore(kept: list[tuple[Path, str | None]]) -> None:
    for path, old in reversed(kept):
        try:
            if old is None:
                os.unlink(path)
            else:
                os.replace(old, path)
        except OSError:
            pass  # best effort: the original error is the one to report


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as exc:  # some filesystems cannot fsync a directory
        if exc.errno not in (errno.EINVAL, errno.EBADF):
            raise
    finally:
        os.close(fd)


def ensure_dir(path: Path, mode: int = 0o755) -> None:
    try:
        path.mkdir(mode=mode, parents=True, exist_ok=True)
    except OSError as exc:
        raise _os_error(exc, path) from None


_held: set[str] = set()  # locks this process holds: taking one again is a no-op, not a deadlock


@contextmanager
def locked(lock_path: Path, *, shared: bool = False) -> Iterator[None]:
    """Hold the project's lock: exclusive to change a project, one run at a time; shared to
    read its files, so a reader never sees one file of a pair renamed and the other not yet.
    A shared lock that cannot be had (a read-only project) reads without it."""
    key = str(lock_path)
    if key in _held:
        yield
        return
    try:
        if not shared:
            ensure_dir(lock_path.parent, 0o700)
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    except (OSError, ChromactlError) as exc:
        if shared:
            yield
            return
        raise exc if isinstance(exc, ChromactlError) else _os_error(exc, lock_path) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        _held.add(key)
        yield
    finally:
        _held.discard(key)
        os.close(fd)
