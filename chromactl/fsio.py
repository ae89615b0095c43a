"""The filesystem side: atomic writes of several files, the project lock, and never
following a link planted inside a project.

Writes under a project root are staged in its .chromactl/tmp/ (0700, git-ignored with
.chromactl/): a run killed half-way leaves no temporary file holding a secret where `git
add .` would pick it up, and the next write (or lock) under that root finishes the renames
it had started (the staged files were all on disk before the first rename)."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import stat
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from chromactl.errors import ChromactlError

STAGING = ".chromactl/tmp"
PENDING = "pending.json"


class UnsafePath(ChromactlError):
    """A path under a project that goes through a link or ends at a special file."""


def _os_error(exc: OSError, path: Path, verb: str = "write") -> ChromactlError:
    reason = os.strerror(exc.errno) if exc.errno else str(exc)
    return ChromactlError(f"cannot {verb} {path}: {reason.lower()}")


def check_inside(root: Path, path: Path) -> None:
    """Refuse a path under `root` that goes through a symbolic link, or ends at something
    other than a folder or a regular file (a FIFO, a device): chromactl would otherwise
    write, chown or lock wherever the link points."""
    root, path = root.absolute(), path.absolute()
    try:
        relative = path.relative_to(root)
    except ValueError:
        return
    current = root
    for part in relative.parts:
        current = current / part
        try:
            info = os.lstat(current)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise _os_error(exc, current, "inspect") from None
        if stat.S_ISLNK(info.st_mode):
            raise UnsafePath(f"refusing to follow {current}: it is a symbolic link",
                                 hint="remove it; chromactl writes only real files and folders in a project")
        if not (stat.S_ISDIR(info.st_mode) or stat.S_ISREG(info.st_mode)):
            raise UnsafePath(f"refusing {current}: not a regular file or folder")


def read_text(path: Path, root: Path | None = None) -> str | None:
    """The file's text, or None when it does not exist. Under `root`, a link or a special
    file (a FIFO would block forever) is refused."""
    if root is not None:
        check_inside(root, path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | (os.O_NOFOLLOW if root is not None else 0))
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafePath(f"refusing to follow {path}: it is a symbolic link") from None
        raise _os_error(exc, path, "read") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UnsafePath(f"refusing {path}: not a regular file")
        with os.fdopen(fd, "rb", closefd=False) as handle:
            data = handle.read()
    finally:
        os.close(fd)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ChromactlError(f"{path.name}: not UTF-8 text") from None


def write_files(files: dict[Path, tuple], root: Path | None = None) -> None:
    """Write every file (path -> (text, mode) or (text, mode, owner uid, group id)) or none.

    Each file is written to a temporary file and flushed to disk; only when all are ready
    are they renamed over the originals, so a reader never sees a half written file. If a
    rename fails part-way, the files already replaced are put back from hard links kept for
    the purpose, so a failure (a full disk, an unwritable folder, a folder in the way)
    changes nothing. Under `root` the temporary files live in its .chromactl/tmp/, and no
    path may go through a link.
    """
    staging = None
    if root is not None:
        for path in files:
            check_inside(root, path)
        staging = root / STAGING
        finish_pending(root)
        ensure_dir(staging, 0o700, root=root)
    staged: list[tuple[str, Path]] = []
    kept: list[tuple[Path, str | None]] = []  # replaced so far, with the link to its old content
    try:
        for path, (text, mode, *owner) in files.items():
            staged.append((_stage(path, text, mode, owner, staging), path))
        if staging is not None:
            _write_pending(staging, staged)
        for tmp, path in staged:
            old = _keep_old(path, staging)
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
        if staging is not None:
            _unlink(str(staging / PENDING))


def _write_pending(staging: Path, staged: list[tuple[str, Path]]) -> None:
    """The renames about to be made, on disk first: a run killed between two of them is
    finished by the next one (finish_pending), so files written together stay together."""
    text = json.dumps([[tmp, str(path)] for tmp, path in staged])
    fd, tmp = tempfile.mkstemp(dir=staging, prefix=".pending.")
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, staging / PENDING)
    _fsync_dir(staging)


def finish_pending(root: Path) -> None:
    """Finish the renames a killed run had started under `root`, and drop its leftovers."""
    staging = root / STAGING
    try:
        entries = json.loads((staging / PENDING).read_text())
    except (OSError, ValueError, RecursionError):
        entries = None
    if entries:
        for tmp, target in entries:
            if os.path.dirname(tmp) == str(staging) and os.path.exists(tmp):
                check_inside(root, Path(target))
                os.replace(tmp, target)
    if staging.is_dir() and not staging.is_symlink():
        for leftover in staging.iterdir():  # staged files and old links of runs that ended early
            _unlink(str(leftover))


def _stage(path: Path, text: str, mode: int, owner: list, staging: Path | None) -> str:
    try:
        fd, tmp = tempfile.mkstemp(dir=staging or path.parent, prefix=f".{path.name}.", suffix=".tmp")
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


def _keep_old(path: Path, staging: Path | None) -> str | None:
    """A hard link to the file's current content, or None when there is no such file."""
    old = f"{staging or path.parent}/.{path.name}.{os.getpid()}.old"
    _unlink(old)
    try:
        os.link(path, old, follow_symlinks=False)
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


def ensure_dir(path: Path, mode: int = 0o755, root: Path | None = None) -> None:
    """The folder, made when missing. Under `root`, no component may be a link."""
    if root is not None:
        check_inside(root, path)
    try:
        path.mkdir(mode=mode, parents=True, exist_ok=True)
    except OSError as exc:
        raise _os_error(exc, path) from None
    if root is not None:
        check_inside(root, path)  # made by someone else meanwhile?


def own_dir(path: Path, user: tuple[int, int], mode: int = 0o700) -> None:
    """Give a folder to a user, through a descriptor opened without following a link."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise UnsafePath(f"refusing to follow {path}: not a real folder") from None
        raise _os_error(exc, path) from None
    try:
        os.fchown(fd, *user)
        os.fchmod(fd, mode)
    except OSError as exc:
        raise ChromactlError(f"cannot give {path} to uid {user[0]}: {os.strerror(exc.errno).lower()}") from None
    finally:
        os.close(fd)


_held: set[str] = set()  # locks this process holds: taking one again is a no-op, not a deadlock


@contextmanager
def locked(lock_path: Path, *, shared: bool = False, root: Path | None = None) -> Iterator[None]:
    """Hold the project's lock: exclusive to change a project, one run at a time; shared to
    read its files, so a reader never sees one file of a pair renamed and the other not yet.
    A shared lock that cannot be had (a read-only project) reads without it. The lock file
    is never followed through a link."""
    key = str(lock_path)
    if key in _held:
        yield
        return
    try:
        if not shared:
            ensure_dir(lock_path.parent, 0o700, root=root)
        elif root is not None:
            check_inside(root, lock_path)
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    except UnsafePath:
        raise
    except (OSError, ChromactlError) as exc:
        if isinstance(exc, OSError) and exc.errno == errno.ELOOP:
            raise UnsafePath(f"refusing to follow {lock_path}: it is a symbolic link") from None
        if shared:
            yield
            return
        raise exc if isinstance(exc, ChromactlError) else _os_error(exc, lock_path) from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            fd = -1
            raise UnsafePath(f"refusing {lock_path}: not a regular file")
        fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        _held.add(key)
        if not shared and root is not None:
            finish_pending(root)
        yield
    finally:
        _held.discard(key)
        if fd >= 0:
            os.close(fd)
