"""The project's TLS files on disk: the CA chromactl keeps (auto) or the operator's own
files (files), the server's certificate, and how chromactl reaches and trusts the
server. The certificates themselves are made by chromactl.tls (pure)."""

from __future__ import annotations

import ipaddress
import socket
import subprocess
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlsplit

from chromactl import fsio
from chromactl.errors import ChromactlError
from chromactl.probe import Endpoint
from chromactl.project import Project, project_lock
from chromactl.spec import url_for
from chromactl.tls import (
    LOCAL_NAMES,
    CertInfo,
    Issued,
    cert_info,
    check_server_files,
    issue_server,
    permits,
    permitted_names,
    server_names,
)
from chromactl.tls import new_ca as make_ca

TLS_DIR = ".chromactl/tls"  # the project's CA (ca.key never leaves this folder)
SERVER_TLS_DIR = ".chromactl/tls/server"  # what a server is given: server.pem (with its chain), server.key
CONTAINER_TLS_DIR = "/etc/chromactl/tls"  # where Chroma 0.x finds that folder, natively


@dataclass(frozen=True)
class TlsMaterial:
    cert: str  # PEM: the server's certificate, then its chain
    key: str  # PEM, private
    ca_path: Path  # the CA clients trust, absolute
    info: CertInfo
    server_name: str | None  # the name to check when chromactl probes over loopback
    uncovered: tuple[str, ...] = ()  # names it should carry but the project's CA may not sign for

    def files(self) -> dict[str, bytes]:
        return {"tls/server.pem": self.cert.encode(), "tls/server.key": self.key.encode()}

    @property
    def ca_fingerprint(self) -> str:
        """The SHA-256 fingerprint of the CA: what clients pin."""
        return cert_info(self.ca_path.read_text(), "the CA certificate").fingerprint


# Interfaces whose addresses no remote client uses: the container engines' own bridges.
_ENGINE_INTERFACES = ("lo", "docker", "br-", "veth", "virbr", "cni", "podman", "flannel", "cali", "vxlan")


def machine_names(engine_address: str | None = None) -> tuple[str, ...]:
    """The names and addresses remote clients reach the server's machine by: for a local
    engine, this host's name, its fully qualified name and the addresses of its interfaces
    (not loopback, link-local or the engines' bridges); for a remote engine (tcp://, ssh://)
    the host named in its address."""
    if engine_address and engine_address.startswith(("tcp://", "ssh://", "https://", "http://")):
        host = urlsplit(engine_address).hostname
        return (host,) if host else ()
    names = [socket.gethostname(), socket.getfqdn()]
    try:
        listed = subprocess.run(["ip", "-o", "addr", "show"], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        listed = ""
    for line in listed.splitlines():
        fields = line.split()
        if len(fields) < 4 or fields[1].startswith(_ENGINE_INTERFACES) or fields[2] not in ("inet", "inet6"):
            continue
        address = ipaddress.ip_interface(fields[3]).ip
        if not (address.is_loopback or address.is_link_local):
            names.append(str(address))
    return tuple(n for n in dict.fromkeys(names) if n and n not in LOCAL_NAMES and n != "localhost.localdomain")


def ensure_tls(project: Project, *, renew: bool = False, machine: tuple[str, ...] | None = None,
               new_ca: bool = False) -> TlsMaterial | None:
    """The server's certificate and key for a project with TLS (None without): the
    operator's own files, checked, or chromactl's CA and a certificate it issues -- made
    when missing, and issued anew when renewing or when its names no longer cover the
    address, the machine's names (`machine`, for a wildcard address: machine_names) and
    the --tls-san names."""
    settings = project.settings
    if not settings.uses_tls:
        return None
    root = project.root
    if settings.tls == "files":
        if renew:
            raise ChromactlError("tls is files: renew the certificate where it was issued; `chromactl up` then "
                                 "serves the new one")
        texts = {}
        for key in ("tls_cert", "tls_key", "tls_ca"):
            path = root / getattr(settings, key)
            texts[key] = fsio.read_text(path, root)
            if texts[key] is None:
                raise ChromactlError(f"{key.replace('_', '-')} {path}: no such file")
        info = check_server_files(texts["tls_cert"], texts["tls_key"], texts["tls_ca"], settings.host,
                                  where="tls files")
        material = _material(project, texts["tls_cert"], texts["tls_key"], info)
        _write_server_tls(root, material)
        return material
    with project_lock(root):
        names = server_names(settings.host, settings.tls_san, machine_names() if machine is None else machine)
        ca_key, ca_pem = fsio.read_text(root / TLS_DIR / "ca.key", root), fsio.read_text(root / TLS_DIR / "ca.pem", root)
        if ca_key is None or ca_pem is None or new_ca:
            ca = make_ca(settings.name, names)  # constrained to the names it serves
            fsio.ensure_dir(root / TLS_DIR, 0o700, root=root)
            fsio.write_files({root / TLS_DIR / "ca.key": (ca.key, 0o600), root / TLS_DIR / "ca.pem": (ca.cert, 0o644)},
                             root)
            ca_key, ca_pem, renew = ca.key, ca.cert, True
        permitted = permitted_names(ca_pem)
        signable = tuple(n for n in names if permits(permitted, n))
        cert = fsio.read_text(root / SERVER_TLS_DIR / "server.pem", root)
        key = fsio.read_text(root / SERVER_TLS_DIR / "server.key", root)
        info = cert_info(cert) if cert else None
        if renew or cert is None or key is None or not set(signable) <= set(info.names) or info.days_left < 1:
            leaf = issue_server(Issued(ca_key, ca_pem), signable)
            cert, key, info = leaf.cert + ca_pem, leaf.key, cert_info(leaf.cert)
        material = replace(_material(project, cert, key, info), uncovered=tuple(n for n in names if n not in signable))
        _write_server_tls(root, material)
    return material


KUBERNETES_CA_DIR = ".chromactl/tls/kubernetes"  # a CA of its own for the export: other names, other clients


def issue_for(project: Project, names: tuple[str, ...]) -> TlsMaterial:
    """A certificate for other names (a Kubernetes Service's), written nowhere but into the
    export, from a CA kept for that deployment and constrained to those names (made anew
    when they change). The operator's own files are used as they are."""
    if project.settings.tls == "files":
        return ensure_tls(project)
    root, folder = project.root, project.root / KUBERNETES_CA_DIR
    key, pem = fsio.read_text(folder / "ca.key", root), fsio.read_text(folder / "ca.pem", root)
    if key is None or pem is None or not all(permits(permitted_names(pem), n) for n in names):
        ca = make_ca(f"{project.settings.name} (Kubernetes)", names)
        fsio.ensure_dir(folder, 0o700, root=root)
        fsio.write_files({folder / "ca.key": (ca.key, 0o600), folder / "ca.pem": (ca.cert, 0o644)}, root)
        key, pem = ca.key, ca.cert
    leaf = issue_server(Issued(key, pem), names)
    return TlsMaterial(leaf.cert + pem, leaf.key, (folder / "ca.pem").absolute(), cert_info(leaf.cert), None)


def read_tls(project: Project) -> TlsMaterial | None:
    """The certificate the project's server was given, as on disk, changing nothing (None
    without TLS or before the first `up`)."""
    settings, root = project.settings, project.root
    if not settings.uses_tls:
        return None
    cert = fsio.read_text(root / SERVER_TLS_DIR / "server.pem", root)
    key = fsio.read_text(root / SERVER_TLS_DIR / "server.key", root)
    if cert is None or key is None:
        return None
    return _material(project, cert, key, cert_info(cert))


def _material(project: Project, cert: str, key: str, info: CertInfo) -> TlsMaterial:
    """The certificate with what clients trust: the operator's CA, or the project's. An
    operator's certificate may not name 127.0.0.1: chromactl's probes then check its first name."""
    if project.settings.tls == "files":
        return TlsMaterial(cert, key, (project.root / project.settings.tls_ca).absolute(), info,
                           None if "127.0.0.1" in info.names else info.names[0])
    return TlsMaterial(cert, key, (project.root / TLS_DIR / "ca.pem").absolute(), info, None)


def _write_server_tls(root: Path, material: TlsMaterial) -> None:
    folder = root / SERVER_TLS_DIR
    files = {folder / "server.pem": (material.cert, 0o644), folder / "server.key": (material.key, 0o600)}
    if any(fsio.read_text(path, root) != text for path, (text, _) in files.items()):
        fsio.ensure_dir(folder, 0o700, root=root)
        fsio.write_files(files, root)


def endpoint(host: str, port: int, tls: TlsMaterial | None, engine_address: str | None = None) -> Endpoint:
    """How chromactl reaches and trusts the project's server from this machine (through the
    engine's host when the engine is remote)."""
    return trusted(url_for(host, port, "https" if tls else "http", engine_address), tls)


def trusted(url: str, tls: TlsMaterial | None) -> Endpoint:
    """The URL with, for https, the CA and name to check the server's certificate against."""
    return Endpoint(url) if tls is None else Endpoint(url, str(tls.ca_path), tls.server_name)
