"""`chromactl down`: stop and remove the containers (the gateway's audit trail archived
first); the data volume only when asked."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from chromactl.audit_archive import remove_gateway
from chromactl.configvol import config_volume_name
from chromactl.deploy import owned_container
from chromactl.engine_api import Engine
from chromactl.errors import Cancelled
from chromactl.project import load_settings
from chromactl.records import record_served, record_volume
from chromactl.recovery import recover
from chromactl.spec import container_name, gateway_name, internal_network_name, network_name, volume_name


class _Silent:
    def step(self, message: str) -> None:
        pass


@dataclass(frozen=True)
class DownResult:
    container: str
    removed: bool  # a container was there and is gone
    volume: str
    volume_removed: bool
    gateway: str | None = None  # the gateway container removed with it
    other_volumes: tuple[str, ...] = ()  # kept by restore or upgrade (--volumes: removed too)
    volume_exists: bool = True  # False: the project never had its data volume (never ran)


def down(root: Path, connect: Callable[[], Engine], *, volumes: bool = False,
         confirm: Callable[[str], bool] | None = None) -> DownResult:
    """Stop and remove the containers. The volumes go only with volumes=True and one
    confirmation (the CLI asks on a terminal, or takes --yes): the data volume and every
    volume restore and upgrade left, all named in the question."""
    settings = load_settings(root)
    engine = connect()
    recover(root, engine, _Silent(), bring_up=False)  # an interrupted operation's files back, its leftovers gone
    name, volume = container_name(settings), volume_name(settings)
    info = owned_container(engine, root, name)
    gateway = owned_container(engine, root, gateway_name(settings))
    volume_present = engine.volume_exists(volume)
    others = tuple(v for v in engine.volumes(str(root)) if v not in (volume, config_volume_name(settings)))
    doomed = ((volume,) if volume_present else ()) + others
    if volumes and doomed and not (confirm and confirm(", ".join(doomed))):
        raise Cancelled(f"cancelled: {', '.join(doomed)} kept", hint="take a backup first (chromactl backup), "
                        "then pass --yes")
    for present in (gateway, info):  # the gateway first: never Chroma without it
        if present is not None:
            engine.stop(present.name)  # its last audit lines flushed (nginx writes them within a second)
            remove_gateway(engine, root, present)  # the gateway's audit trail archived first
    for network in (network_name(settings), internal_network_name(settings)):
        engine.remove_network(network)
    engine.remove_volume(config_volume_name(settings))  # secrets only: `up` delivers them again
    record_served(root, frozenset())  # no server holds any credential now
    volume_removed = False
    if volumes:
        volume_removed = engine.remove_volume(volume) if volume_present else False
        for other in others:
            engine.remove_volume(other)
        record_volume(root, None)  # deleted on purpose: the next `up` starts empty without complaint
        others = ()
    return DownResult(name, info is not None, volume, volume_removed, gateway.name if gateway else None, others,
                      volume_present)
