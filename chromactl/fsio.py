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
    """Write every file (path -> (text, mode) or (text, mode, group id)) or none of them.

    Each file is written to a temporary file in its own folder, flushed to disk, and
    only when all are ready renamed over the originals, so a reader never sees a half
    written file and a failure (a full disk, an unwritable folder) changes nothing.
    """
    staged: list[tuple[str, Path]] = []
    try:
        for path, (text, mode, *group) in files.items():
            try:
                fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            except OSError as exc:
                raise _os_error(exc, path) from None
            staged.append((tmp, path))
            try:
                if group:
                    os.fchown(fd, -1, group[0])
                os.fchmod(fd, mode)
                with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
                    handle.write(text)
                    handle.flush()
                    os.fsync(handle.fileno())
            except OSError as exc:
                raise _os_error(exc, path) from None
        for tmp, path in staged:
            os.replace(tmp, path)
        staged = []
        for folder in {path.parent for path in files}:
            _fsync_dir(folder)
    finally:
        for tmp, _ in staged:
            try:
                os.unlink(tmp)
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


@contextmanager
def locked(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive lock so concurrent chromactl runs change a project one at a time."""
    ensure_dir(lock_path.parent, 0o700)
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise _os_error(exc, lock_path) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
