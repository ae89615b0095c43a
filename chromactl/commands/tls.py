"""`chromactl tls show|renew`: the project's certificate."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from chromactl.certs import TlsMaterial, ensure_tls, machine_names, read_tls
from chromactl.deploy import Applied, Reporter, apply_change
from chromactl.engine_api import Engine, EngineUnavailable
from chromactl.errors import ChromactlError
from chromactl.probe import served_certificate
from chromactl.project import Project, load_project
from chromactl.spec import probe_host
from chromactl.tls import cert_info


@dataclass(frozen=True)
class TlsResult:
    mode: str
    material: TlsMaterial
    ca_fingerprint: str
    port: int
    applied: Applied | None = None  # renew: how the running server took it
    new_ca: bool = False


def _load(root: Path) -> Project:
    project = load_project(root)
    if not project.settings.uses_tls:
        raise ChromactlError("this project has tls off", hint="turn it on with `chromactl init --force --tls auto`")
    return project


def show(root: Path) -> TlsResult:
    project = _load(root)
    material = read_tls(project) or ensure_tls(project)
    return TlsResult(project.settings.tls, material, material.ca_fingerprint, project.settings.port)


def renew(root: Path, connect: Callable[[], Engine], reporter: Reporter, *, new_ca: bool = False) -> TlsResult:
    """A new leaf from the same CA (or, with `new_ca`, from a new CA constrained to today's
    names: clients must then trust the new ca.pem); a running server is given it at once."""
    project = _load(root)
    try:
        engine = connect()
    except EngineUnavailable:
        engine = None
    # The names are derived again: the machine's names and addresses as they are now.
    material = ensure_tls(project, renew=True, machine=machine_names(engine.address if engine else None),
                          new_ca=new_ca)
    applied = apply_change(project, connect if engine is None else (lambda: engine), reporter)
    if applied in (Applied.RELOADED, Applied.RECREATED, Applied.IN_EFFECT):
        _wait_until_served(project, material, engine.address if engine else None)
    return TlsResult(project.settings.tls, material, material.ca_fingerprint, project.settings.port, applied, new_ca)


def _wait_until_served(project: Project, material: TlsMaterial, engine_address: str | None,
                       timeout: float = 10.0) -> None:
    """A reload takes effect for new connections within moments: prove the new certificate
    is the one served before saying so."""
    host = probe_host(project.settings.host, engine_address)
    deadline = time.monotonic() + timeout
    while True:
        served = served_certificate(host, project.settings.port)
        if served is not None and cert_info(served).fingerprint == material.info.fingerprint:
            return
        if time.monotonic() > deadline:
            raise ChromactlError(f"the server still presents its old certificate after {timeout:g} s",
                                 hint="see `chromactl logs --service gateway`; `chromactl up` restarts what is needed")
        time.sleep(0.05)
