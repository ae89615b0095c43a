"""`chromactl down` and `chromactl logs`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from chromactl.errors import ChromactlError
from chromactl.project import read_stored_settings
from chromactl.settings import Settings, resolve_settings
from chromactl.spec import LABEL_PROJECT, container_name, gateway_name, network_name, volume_name


@dataclass(frozen=True)
class DownResult:
    container: str
    removed: bool  # a container was there and is gone
    volume: str
    volume_removed: bool
    gateway: str | None = None  # the gateway container removed with it


def _settings(root: Path) -> Settings:
    """Only the settings: down and logs work even when credential files are broken."""
    stored = read_stored_settings(root)
    if stored is None:
        raise ChromactlError(f"no chromactl project in {root}", hint="run it in the project's folder, or pass --dir")
    return resolve_settings({}, stored, folder_name=root.name)


def _owned(engine, root: Path, name: str):
    info = engine.container(name)
    if info is not None and info.labels.get(LABEL_PROJECT) != str(root):
        raise ChromactlError(f"container {name} does not belong to this project ({info.labels.get(LABEL_PROJECT)})")
    return info


def down(root: Path, *, volumes: bool = False, confirm: Callable[[str], bool] | None = None) -> DownResult:
    """Stop and remove the container. The data volume goes only with volumes=True and
    a confirmation (the CLI asks on a terminal, or takes --yes)."""
    from chromactl.engine import Engine

    root = root.absolute()
    settings = _settings(root)
    engine = Engine.connect()
    name, volume = container_name(settings), volume_name(settings)
    info = _owned(engine, root, name)
    gateway = _owned(engine, root, gateway_name(settings))
    if volumes and not (confirm and confirm(volume)):
        raise ChromactlError(f"not deleting volume {volume} without confirmation", hint="pass --yes")
    for present in (gateway, info):  # the gateway first: never Chroma without it
        if present is not None:
            engine.stop(present.name)
            engine.remove(present.name)
    engine.remove_network(network_name(settings))
    volume_removed = engine.remove_volume(volume) if volumes else False
    return DownResult(name, info is not None, volume, volume_removed, gateway.name if gateway else None)


SERVICES = ("chroma", "gateway")


def logs(root: Path, *, tail: int | None = None, follow: bool = False, service: str = "chroma") -> Iterator[bytes]:
    from chromactl.engine import Engine

    root = root.absolute()
    settings = _settings(root)
    if service not in SERVICES:
        raise ChromactlError(f"unknown service {service!r}: use chroma or gateway")
    engine = Engine.connect()
    name = container_name(settings) if service == "chroma" else gateway_name(settings)
    if _owned(engine, root, name) is None:
        raise ChromactlError(f"no container {name}", hint="start it with `chromactl up`")
    return engine.logs(name, tail=tail if tail is not None else "all", follow=follow)
