"""`chromactl down`: stop and remove the containers; the data volume only when asked."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from chromactl.deploy import owned_container
from chromactl.engine_api import Engine
from chromactl.errors import Cancelled
from chromactl.project import load_settings
from chromactl.records import record_served
from chromactl.spec import container_name, gateway_name, network_name, volume_name


@dataclass(frozen=True)
class DownResult:
    container: str
    removed: bool  # a container was there and is gone
    volume: str
    volume_removed: bool
    gateway: str | None = None  # the gateway container removed with it
    other_volumes: tuple[str, ...] = ()  # kept by restore or upgrade: the operator removes them


def down(root: Path, connect: Callable[[], Engine], *, volumes: bool = False,
         confirm: Callable[[str], bool] | None = None) -> DownResult:
    """Stop and remove the containers. The data volume goes only with volumes=True and
    a confirmation (the CLI asks on a terminal, or takes --yes)."""
    settings = load_settings(root)
    engine = connect()
    name, volume = container_name(settings), volume_name(settings)
    info = owned_container(engine, root, name)
    gateway = owned_container(engine, root, gateway_name(settings))
    if volumes and not (confirm and confirm(volume)):
        raise Cancelled(f"cancelled: volume {volume} is kept", hint="take a backup first (chromactl backup), "
                        "then pass --yes")
    for present in (gateway, info):  # the gateway first: never Chroma without it
        if present is not None:
            engine.stop(present.name)
            engine.remove(present.name)
    engine.remove_network(network_name(settings))
    record_served(root, frozenset())  # no server holds any credential now
    volume_removed = engine.remove_volume(volume) if volumes else False
    others = tuple(v for v in engine.volumes(str(root)) if v != volume)
    return DownResult(name, info is not None, volume, volume_removed, gateway.name if gateway else None, others)
