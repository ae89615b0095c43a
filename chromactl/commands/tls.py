"""`chromactl tls show|renew`: the project's certificate."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from chromactl.errors import ChromactlError
from chromactl.plan import TlsMaterial, ensure_tls, read_tls
from chromactl.probe import served_certificate
from chromactl.project import load_project
from chromactl.spec import probe_host
from chromactl.tls import cert_info


@dataclass(frozen=True)
class TlsResult:
    mode: str
    material: TlsMaterial
    ca_fingerprint: str
    applied: str | None = None  # renew: how the running server took it


def _ca_fingerprint(material: TlsMaterial) -> str:
    return cert_info(material.ca_path.read_text(), "the CA certificate").fingerprint


def show(root: Path) -> TlsResult:
    project = load_project(root.absolute())
    if not project.settings.uses_tls:
        raise ChromactlError("this project has tls off", hint="turn it on with `chromactl init --force --tls auto`")
    material = read_tls(project) or ensure_tls(project)
    return TlsResult(project.settings.tls, material, _ca_fingerprint(material))


def renew(root: Path, reporter) -> TlsResult:
    """A new leaf from the same CA; a running server is given it at once."""
    from chromactl.commands.creds import apply_change

    project = load_project(root.absolute())
    if not project.settings.uses_tls:
        raise ChromactlError("this project has tls off", hint="turn it on with `chromactl init --force --tls auto`")
    material = ensure_tls(project, renew=True)
    applied = apply_change(project.root, reporter)
    if applied.startswith("In effect"):
        _wait_until_served(project.settings, material)
    return TlsResult(project.settings.tls, material, _ca_fingerprint(material), applied)


def _wait_until_served(settings, material: TlsMaterial, timeout: float = 10.0) -> None:
    """A reload takes effect for new connections within moments: prove the new certificate
    is the one served before saying so."""
    host = probe_host(settings.host)
    deadline = time.monotonic() + timeout
    while True:
        served = served_certificate(host, settings.port)
        if served is not None and cert_info(served).fingerprint == material.info.fingerprint:
            return
        if time.monotonic() > deadline:
            raise ChromactlError(f"the server still presents its old certificate after {timeout:g} s",
                                 hint="see `chromactl logs --service gateway`; `chromactl up` restarts what is needed")
        time.sleep(0.05)
