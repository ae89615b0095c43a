"""From a loaded project to the containers it should run and the files they read: shared
by up, status, down and export."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from chromactl import fsio
from chromactl.credentials import PROBE_USER, credential_file_names
from chromactl.envfile import ENV_FILE, parse_env_file, server_environment
from chromactl.errors import ChromactlError
from chromactl.gateway import LISTEN_PORT, UNPRIVILEGED_ID, gateway_spec, render_gateway, uncovered_actions
from chromactl.images import auth_verdict, data_path
from chromactl.probe import Endpoint
from chromactl.project import Project, project_lock
from chromactl.tls import CertInfo, Issued, cert_info, check_server_files, issue_server, new_ca, server_names
from chromactl.spec import LABEL_PROJECT, ContainerSpec, build_spec, loopback_command, tls_command, url_for

if TYPE_CHECKING:
    from chromactl.engine import ContainerInfo


def read_environment(project: Project) -> dict[str, str]:
    """The container's environment, read from .chroma_env as `docker run --env-file`
    would. Extra variables are the operator's to add; the auth ones must still say
    what chromactl.yaml says, or the server would not run the auth it is meant to."""
    text = fsio.read_text(project.root / ENV_FILE)
    if text is None:
        raise ChromactlError(f"{ENV_FILE} is missing", hint="recreate it with `chromactl init --force`")
    env = parse_env_file(text)
    expected = server_environment(project.settings)
    for key, value in expected.items():
        if env.get(key) != value:
            raise ChromactlError(f"{ENV_FILE}: {key} does not match chromactl.yaml (auth {project.settings.auth})",
                                 hint="rewrite it with `chromactl init --force`")
    for key in env:
        if key.startswith(("CHROMA_SERVER_AUTH", "CHROMA_AUTH_")) and key not in expected:
            raise ChromactlError(f"{ENV_FILE}: {key} is set but chromactl.yaml says auth {project.settings.auth}",
                                 hint="remove it, or rewrite the file with `chromactl init --force`")
    return env


def mounted_files(project: Project) -> dict[str, bytes]:
    """The credential files the Chroma container mounts: none behind a gateway."""
    if project.settings.uses_gateway:
        return {}
    contents = {}
    for name in credential_file_names(project.settings):
        try:
            contents[name] = (project.root / name).read_bytes()
        except OSError:
            raise ChromactlError(f"cannot read {name}") from None
    return contents


def check_image_enforces_auth(project: Project) -> None:
    """Refuse auth on an image whose tag says it ignores the settings."""
    settings = project.settings
    verdict = auth_verdict(settings.image)
    if settings.auth_enabled and not settings.uses_gateway and verdict.enforces_auth is False:
        raise ChromactlError(f"refusing auth {settings.auth}: {verdict.reason}",
                             hint="put the nginx gateway in front (`chromactl init --force --gateway nginx`), or use "
                                  "chromadb/chroma:0.6.3")


def check_probe(project: Project) -> None:
    if not project.settings.auth_enabled:
        return
    probe = project.credentials.get(PROBE_USER)
    if probe is None or not project.probe_secret:
        raise ChromactlError(f"the internal user {PROBE_USER!r} or its secret is missing, so auth cannot be verified",
                             hint="recreate it with `chromactl init --force` (users are kept)")
    if project.settings.auth == "token" and project.probe_secret not in probe.tokens:
        raise ChromactlError(f".chromactl/probe-secret does not match {PROBE_USER}'s token",
                             hint=f"renew both with `chromactl creds rotate {PROBE_USER}`")


def plan_container(project: Project, image_id: str, image_config: dict | None = None,
                   namespace_of: str | None = None, tls: TlsMaterial | None = None) -> ContainerSpec:
    """Chroma's container; `image_config` is the image's Config (working dir, command),
    `namespace_of` the id of the gateway container whose network namespace it joins, and
    `tls` the certificate it serves itself when no gateway terminates TLS for it."""
    config = image_config or {}
    settings = project.settings
    command = tls_dir = tls_files = None
    if settings.uses_gateway:
        command = loopback_command(config.get("Cmd"))
    elif tls is not None:
        command = tls_command(config.get("Cmd"), f"{CONTAINER_TLS_DIR}/server.key", f"{CONTAINER_TLS_DIR}/server.pem")
        tls_dir, tls_files = (str(project.root / SERVER_TLS_DIR), CONTAINER_TLS_DIR), tls.files()
    return build_spec(str(project.root), settings, read_environment(project), mounted_files(project), image_id,
                      data_path(settings.image, config.get("WorkingDir")), command, namespace_of, tls_dir, tls_files)


def env_file_path(project: Project) -> Path:
    return project.root / ENV_FILE


# --- the gateway --------------------------------------------------------------------------

GATEWAY_DIR = ".chromactl/gateway"


@dataclass(frozen=True)
class GatewayPlan:
    """The gateway's configuration files (path -> (text, mode, uid, gid)) and, for `up`,
    its container."""

    folder: Path
    files: dict[Path, tuple]
    user: tuple[int, int]
    spec: ContainerSpec | None = None

    @property
    def changed(self) -> bool:
        """Whether the files on disk differ from these (content, or owner)."""
        for path, (text, *_) in self.files.items():
            if fsio.read_text(path) != text or (path.stat().st_uid, path.stat().st_gid) != self.user:
                return True
        return False

    def write(self) -> bool:
        """Write the files when they changed; True if they did."""
        if not self.changed:
            return False
        _ensure_gateway_dir(self.folder, self.user)
        fsio.write_files(self.files)
        return True


def gateway_user() -> tuple[int, int]:
    """The unprivileged uid and gid the gateway runs as: the operator's own, or a fixed
    unprivileged one when chromactl runs as root. Its files are readable by it alone."""
    if os.getuid() != 0:
        return os.getuid(), os.getgid()
    return UNPRIVILEGED_ID, UNPRIVILEGED_ID


def plan_gateway(project: Project, image_id: str | None = None, *, folder: str = GATEWAY_DIR,
                 listen: int = LISTEN_PORT, tls: TlsMaterial | None = None) -> GatewayPlan:
    """The gateway's configuration rendered from the project's credentials (0600, owned
    by the gateway's user: it holds tokens or password hashes), and its container when
    `image_id` is given."""
    settings = project.settings
    if settings.rbac:
        missing = uncovered_actions(project.credentials.roles or {})
        if missing:
            raise ChromactlError(f"the gateway's route table has no route for action {missing[0]!r}, "
                                 "which a role in authz.yaml grants",
                                 hint="remove the action from roles_mapping, or update chromactl")
    rendered = render_gateway(settings, project.credentials, listen=listen,
                              tls=(tls.cert, tls.key) if tls is not None else None)
    user = gateway_user()
    target = project.root / folder
    files = {target / name: (text, 0o600, *user) for name, text in rendered.items()}
    spec = gateway_spec(str(project.root), settings, str(target), image_id, user) if image_id is not None else None
    return GatewayPlan(target, files, user, spec)


def _ensure_gateway_dir(folder: Path, user: tuple[int, int]) -> None:
    """The folder mounted into the gateway: its user's alone."""
    fsio.ensure_dir(folder, 0o700)
    try:
        os.chown(folder, *user)
        os.chmod(folder, 0o700)
    except OSError as exc:
        raise ChromactlError(f"cannot give {folder} to uid {user[0]} (the gateway's user): "
                             f"{os.strerror(exc.errno).lower()}") from None


# --- containers on the engine ------------------------------------------------------------


def owned_container(engine, root: Path, name: str) -> ContainerInfo | None:
    """The project's container of that name, or None; one of another owner is refused."""
    existing = engine.container(name)
    if existing is not None and existing.labels.get(LABEL_PROJECT) != str(root):
        owner = existing.labels.get(LABEL_PROJECT, "something other than chromactl")
        raise ChromactlError(f"a container named {name} already exists and belongs to {owner}",
                             hint="give this project another name: chromactl init --force --name NAME")
    return existing


def started(info: ContainerInfo) -> datetime:
    """When the container last started, from the engine's RFC 3339 timestamp."""
    text = (info.started_at or "").rstrip("Z")
    stamp, _, fraction = text.partition(".")
    try:
        return datetime.fromisoformat(f"{stamp}.{(fraction + '000000')[:6]}")
    except ValueError:
        return datetime.min


# --- TLS --------------------------------------------------------------------------------------

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

    def files(self) -> dict[str, bytes]:
        return {"tls/server.pem": self.cert.encode(), "tls/server.key": self.key.encode()}


def ensure_tls(project: Project, *, renew: bool = False) -> TlsMaterial | None:
    """The server's certificate and key for a project with TLS (None without): the
    operator's own files, checked, or chromactl's CA and a certificate it issues -- made
    when missing, and issued anew when renewing or when its names no longer cover the
    address and --tls-san names."""
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
            texts[key] = fsio.read_text(path)
            if texts[key] is None:
                raise ChromactlError(f"{key.replace('_', '-')} {path}: no such file")
        info = check_server_files(texts["tls_cert"], texts["tls_key"], texts["tls_ca"], settings.host,
                                  where="tls files")
        material = _material(project, texts["tls_cert"], texts["tls_key"], info)
        _write_server_tls(root, material)
        return material
    with project_lock(root):
        ca_key, ca_pem = fsio.read_text(root / TLS_DIR / "ca.key"), fsio.read_text(root / TLS_DIR / "ca.pem")
        if ca_key is None or ca_pem is None:
            ca = new_ca(settings.name)
            fsio.ensure_dir(root / TLS_DIR, 0o700)
            fsio.write_files({root / TLS_DIR / "ca.key": (ca.key, 0o600), root / TLS_DIR / "ca.pem": (ca.cert, 0o644)})
            ca_key, ca_pem = ca.key, ca.cert
        names = server_names(settings.host, settings.tls_san)
        cert = fsio.read_text(root / SERVER_TLS_DIR / "server.pem")
        key = fsio.read_text(root / SERVER_TLS_DIR / "server.key")
        info = cert_info(cert) if cert else None
        if renew or cert is None or key is None or not set(names) <= set(info.names) or info.days_left < 1:
            leaf = issue_server(Issued(ca_key, ca_pem), names)
            cert, key, info = leaf.cert + ca_pem, leaf.key, cert_info(leaf.cert)
        material = _material(project, cert, key, info)
        _write_server_tls(root, material)
    return material


def read_tls(project: Project) -> TlsMaterial | None:
    """The certificate the project's server was given, as on disk, changing nothing (None
    without TLS or before the first `up`)."""
    settings, root = project.settings, project.root
    if not settings.uses_tls:
        return None
    cert = fsio.read_text(root / SERVER_TLS_DIR / "server.pem")
    key = fsio.read_text(root / SERVER_TLS_DIR / "server.key")
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
    if any(fsio.read_text(path) != text for path, (text, _) in files.items()):
        fsio.ensure_dir(folder, 0o700)
        fsio.write_files(files)


def endpoint(host: str, port: int, tls: TlsMaterial | None) -> Endpoint:
    """How chromactl reaches and trusts the project's server from this machine."""
    return trusted(url_for(host, port, "https" if tls else "http"), tls)


def trusted(url: str, tls: TlsMaterial | None) -> Endpoint:
    """The URL with, for https, the CA and name to check the server's certificate against."""
    return Endpoint(url) if tls is None else Endpoint(url, str(tls.ca_path), tls.server_name)
