"""The files a container reads -- the gateway's nginx.conf, password hashes and certificate;
natively, Chroma's credential files and certificate -- delivered through the engine into a
volume of the project's own (`chromactl-<name>-config`), not bind-mounted from the project
folder. So the engine need not see the folder: a remote Docker host, Podman, a rootless
engine all get the same files. The folder stays the single source of truth; a marker in the
volume holds the digest of what was delivered, so `status` can tell when the two differ.

Files are written while no container reads them: before a container is (re)created, and
before the gateway is told to reload."""

from __future__ import annotations

import hashlib
import io
import tarfile
import time
from dataclasses import dataclass

from chromactl.archive import extract_bytes
from chromactl.engine_api import Engine, EngineError
from chromactl.settings import Settings
from chromactl.spec import LABEL_PROJECT

MARKER = ".chromactl-config"
HOLDER_PATH = "/config"


@dataclass(frozen=True)
class ConfigFile:
    content: bytes
    mode: int = 0o600
    uid: int = 0
    gid: int = 0


def config_volume_name(settings: Settings) -> str:
    return f"chromactl-{settings.name}-config"


def digest(files: dict[str, ConfigFile]) -> str:
    """What the files are, owners and modes included: what the marker holds."""
    h = hashlib.sha256()
    for name in sorted(files):
        f = files[name]
        h.update(f"{name}\0{f.mode:o}\0{f.uid}\0{f.gid}\0".encode() + hashlib.sha256(f.content).digest())
    return h.hexdigest()


def _tar(files: dict[str, ConfigFile], marker: str) -> bytes:
    buffer = io.BytesIO()
    now = int(time.time())
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        folders = sorted({name.rsplit("/", 1)[0] for name in files if "/" in name})
        for folder in folders:
            owner = next(f for n, f in files.items() if n.startswith(folder + "/"))
            info = tarfile.TarInfo(folder)
            info.type, info.mode, info.uid, info.gid, info.mtime = tarfile.DIRTYPE, 0o700, owner.uid, owner.gid, now
            tar.addfile(info)
        for name, f in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.uid, info.gid, info.mtime = len(f.content), f.mode, f.uid, f.gid, now
            tar.addfile(info, io.BytesIO(f.content))
        info = tarfile.TarInfo(MARKER)  # last: it says the rest is there
        info.size, info.mode, info.mtime = len(marker), 0o644, now
        tar.addfile(info, io.BytesIO(marker.encode()))
    return buffer.getvalue()


def _holder(engine: Engine, root: str, volume: str, image: str) -> str:
    name = f"{volume}-holder"
    if not engine.volume_exists(volume):
        engine.create_volume(volume, {LABEL_PROJECT: root})
    engine.create_holder(name, image, volume, HOLDER_PATH, {LABEL_PROJECT: root})
    return name


def delivered(engine: Engine, root: str, volume: str, image: str) -> str | None:
    """The digest of what the volume holds now (None: nothing delivered yet)."""
    if not engine.volume_exists(volume):
        return None
    holder = _holder(engine, root, volume, image)
    try:
        marker = extract_bytes(engine.archive_out(holder, f"{HOLDER_PATH}/{MARKER}"))
    except EngineError:
        marker = None  # no marker: nothing delivered
    finally:
        engine.remove(holder)
    return marker.decode(errors="replace").strip() if marker else None


def deliver(engine: Engine, root: str, volume: str, image: str, files: dict[str, ConfigFile]) -> bool:
    """Put the files into the volume (made when missing) through a container of `image` that
    is created and never started; nothing when the volume holds them already. True if written."""
    wanted = digest(files)
    if delivered(engine, root, volume, image) == wanted:
        return False
    holder = _holder(engine, root, volume, image)
    try:
        engine.archive_in(holder, HOLDER_PATH, _tar(files, wanted))
    finally:
        engine.remove(holder)
    return True
