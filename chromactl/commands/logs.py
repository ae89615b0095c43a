"""`chromactl logs`: the server's or the gateway's log."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

from chromactl.deploy import owned_container
from chromactl.engine_api import Engine
from chromactl.errors import ChromactlError, UsageError
from chromactl.project import load_settings
from chromactl.spec import container_name, gateway_name

SERVICES = ("chroma", "gateway")


def logs(root: Path, connect: Callable[[], Engine], *, tail: int | None = None, follow: bool = False,
         service: str = "chroma") -> Iterator[bytes]:
    settings = load_settings(root)
    if service not in SERVICES:
        raise UsageError(f"unknown service {service!r}: use chroma or gateway")
    engine = connect()
    name = container_name(settings) if service == "chroma" else gateway_name(settings)
    if owned_container(engine, root, name) is None:
        raise ChromactlError(f"no container {name}", hint="start it with `chromactl up`")
    return engine.logs(name, tail=tail if tail is not None else "all", follow=follow)
