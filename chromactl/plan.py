"""From a loaded project to the containers it should run and the files they read. Pure:
the project was read once (chromactl.project) and the image inspected by the caller;
nothing here touches the filesystem or the engine."""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

from chromactl.certs import CONTAINER_TLS_DIR, TlsMaterial
from chromactl.configvol import ConfigFile, config_volume_name
from chromactl.credentials import PROBE_USER, credential_file_names
from chromactl.engine_api import ImageInfo
from chromactl.envfile import ENV_FILE, parse_env_file, server_environment
from chromactl.errors import ChromactlError
from chromactl.gateway import LISTEN_PORT, UPSTREAM, gateway_spec, render_gateway, uncovered_actions
from chromactl.images import auth_verdict, data_path
from chromactl.probe import credential_headers
from chromactl.project import Project
from chromactl.settings import is_loopback
from chromactl.spec import (
    CONTAINER_PORT,
    INTERNAL_PREFIX,
    Attachment,
    ContainerSpec,
    build_spec,
    internal_addresses,
    internal_network_name,
    tls_command,
)


def read_environment(project: Project) -> dict[str, str]:
    """The container's environment, read from .chroma_env as `docker run --env-file`
    would. Extra variables are the operator's to add; the auth ones must still say
    what chromactl.yaml says, or the server would not run the auth it is meant to."""
    if project.env_text is None:
        raise ChromactlError(f"{ENV_FILE} is missing", hint="recreate it with `chromactl init --force`")
    env = parse_env_file(project.env_text)
    expected = server_environment(project.settings)
    for key, value in expected.items():
        if env.get(key) != value:
            raise ChromactlError(f"{ENV_FILE}: {key} does not match chromactl.yaml (auth {project.settings.auth})",
                                 hint="rewrite it with `chromactl init --force`")
    # Chroma reads its settings without regard to case (pydantic), so `chroma_server_authz_provider=`
    # beside the right one would turn RBAC off: every auth variable, in any case, must be one
    # chromactl wrote, spelled as it wrote it.
    for key in env:
        if affects_auth(key) and key not in expected:
            twin = next((k for k in expected if k.upper() == key.upper()), None)
            why = (f"a twin of {twin} in another case (Chroma reads both)" if twin else
                   f"set, but chromactl.yaml says auth {project.settings.auth}")
            raise ChromactlError(f"{ENV_FILE}: {key} is {why}; it would change how Chroma authenticates",
                                 hint="remove it, or rewrite the file with `chromactl init --force`")
    return env


def affects_auth(key: str) -> bool:
    """Whether Chroma 0.5/0.6 takes this variable (in any case) as an auth setting: the
    providers, their credentials and config files, the token header, the paths exempt from
    auth, and the tenant override."""
    upper = key.upper()
    return upper.startswith(("CHROMA_SERVER_AUTH", "CHROMA_AUTH_", "CHROMA_OVERWRITE_SINGLETON_TENANT"))


def mounted_files(project: Project) -> dict[str, bytes]:
    """The credential files the Chroma container mounts: none behind a gateway."""
    if project.settings.uses_gateway:
        return {}
    return {name: project.credential_texts[name].encode() for name in credential_file_names(project.settings)}


def check_image_enforces_auth(project: Project) -> None:
    """Refuse auth on an image whose tag says it ignores the settings."""
    settings = project.settings
    verdict = auth_verdict(settings.image)
    if settings.auth_enabled and not settings.uses_gateway and verdict.enforces_auth is False:
        raise ChromactlError(f"refusing auth {settings.auth}: {verdict.reason}",
                             hint="put the nginx gateway in front (`chromactl init --force --gateway nginx`), or use "
                                  "chromadb/chroma:0.6.3")


def scope_refusal(settings, user: str, tenant: str) -> ChromactlError | None:
    """Why a user scoped to `tenant` cannot be held to it in this project, or None: only the
    gateway enforces a scope (Chroma 0.6 reads tenant and databases from authz.yaml to route
    its clients, and its RBAC ignores them), and the role decides inside it."""
    if not settings.uses_gateway:
        return ChromactlError(f"user {user!r} is scoped to tenant {tenant!r}, which Chroma 0.5/0.6 does not enforce "
                              "(its RBAC ignores tenant and databases)",
                              hint="put the gateway in front, which does: `chromactl init --force --gateway nginx`; "
                                   "users are kept")
    if not settings.rbac:
        return ChromactlError(f"user {user!r} is scoped to tenant {tenant!r}, which needs RBAC (the role decides "
                              "inside the tenant)", hint="turn RBAC on: `chromactl init --force --rbac`")
    return None


def check_scopes(project: Project) -> None:
    """Refuse to serve a scope the deployment would not enforce."""
    for user in project.credentials.users:
        if user.tenant is not None:
            refusal = scope_refusal(project.settings, user.name, user.tenant)
            if refusal is not None:
                raise refusal


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


def check_reachable_from_here(settings, engine_address: str) -> None:
    """A remote engine (tcp://, ssh:// to another machine) publishing on a loopback address
    serves that machine alone: chromactl, here, could not prove the server, nor could any
    client but one on that machine (or through a tunnel)."""
    remote = urlsplit(engine_address).hostname if "://" in engine_address else None
    if not engine_address.startswith(("tcp://", "ssh://", "http://", "https://")) or remote is None:
        return
    if is_loopback(settings.host) and not _names_loopback(remote):
        raise ChromactlError(f"the engine at {engine_address} runs on {remote}: a server published on {settings.host} "
                             f"there is out of this machine's reach, so chromactl could not prove it",
                             hint="publish on an address of that machine: `chromactl init --force --host 0.0.0.0` "
                                  "(TLS and auth as before)")


def _names_loopback(hostname: str) -> bool:
    return hostname == "localhost" or is_loopback(hostname)


# Where an exported Compose file takes its internal subnet when no engine answers at export
# time (with one, the engine's own choice is used): /28s of a block of Docker's default pools.
INTERNAL_POOL = "172.31.0.0/16"


def choose_subnet(taken: list[str], seed: str) -> str:
    """A /28 of INTERNAL_POOL that overlaps nothing in `taken`, the search starting at a
    place that `seed` (the project) picks, so that projects rarely race for the same one."""
    pool = list(ipaddress.ip_network(INTERNAL_POOL).subnets(new_prefix=INTERNAL_PREFIX))
    used = [ipaddress.ip_network(t, strict=False) for t in taken]
    start = int(hashlib.sha256(seed.encode()).hexdigest(), 16) % len(pool)
    for step in range(len(pool)):
        candidate = pool[(start + step) % len(pool)]
        if not any(candidate.overlaps(u) for u in used if u.version == 4):
            return str(candidate)
    raise ChromactlError(f"no free /{INTERNAL_PREFIX} subnet left in {INTERNAL_POOL} for the internal network",
                         hint="remove networks you no longer use (`docker network prune`)")


def plan_container(project: Project, image: ImageInfo | None, subnet: str | None = None,
                   tls: TlsMaterial | None = None, data_path: str | None = None) -> ContainerSpec:
    """Chroma's container; `image` is what the engine says of the image (working dir,
    command; None for --dry-run), `subnet` the internal network's when a gateway stands in
    front, `tls` the certificate it serves itself when no gateway terminates TLS for it,
    and `data_path` where the image keeps its data (chromactl.deploy.resolve_data_path)."""
    settings = project.settings
    command = tls_files = internal = None
    cmd = list(image.command) if image and image.command else None
    if settings.uses_gateway:
        internal = Attachment(internal_network_name(settings), internal_addresses(subnet)[0] if subnet else None)
    elif tls is not None:
        command = tls_command(cmd, f"{CONTAINER_TLS_DIR}/server.key", f"{CONTAINER_TLS_DIR}/server.pem")
        tls_files = tls.files()
    path = data_path or known_data_path(project)
    return build_spec(str(project.root), settings, read_environment(project), mounted_files(project),
                      image.id if image else "", path, command, internal, config_volume_name(settings), tls_files)


def native_config_files(project: Project, tls: TlsMaterial | None) -> dict[str, ConfigFile]:
    """What Chroma reads natively from its config volume (at /etc/chromactl): the credential
    files, and the certificate it serves itself. Chroma runs as root in its image."""
    files = {name: ConfigFile(content) for name, content in mounted_files(project).items()}
    if tls is not None:
        files.update({name: ConfigFile(content) for name, content in tls.files().items()})
    return files


def known_data_path(project: Project, image: ImageInfo | None = None) -> str:
    """Where the data is, when the settings, the image's version or its metadata say so
    without reading a file from the image; refused otherwise (never guessed)."""
    found = data_path(project.settings.image, image, project.settings.data_path)
    if found.path is None:
        raise unknown_data_path(project.settings.image, found.source)
    return found.path


def unknown_data_path(image: str, why: str) -> ChromactlError:
    return ChromactlError(f"cannot tell where {image} keeps its data ({why})",
                          hint="set it in chromactl.yaml, e.g. `data_path: /data`, so that the volume is mounted there")


@dataclass(frozen=True)
class GatewayPlan:
    """The gateway's configuration files (name -> file, owned by its user, 0600: they hold
    tokens or password hashes) and, for `up`, its container."""

    files: dict[str, ConfigFile]
    user: tuple[int, int]
    spec: ContainerSpec | None = None


def plan_gateway(project: Project, user: tuple[int, int], image_id: str | None = None, *,
                 listen: int = LISTEN_PORT, tls: TlsMaterial | None = None,
                 subnet: str | None = None) -> GatewayPlan:
    """The gateway's configuration rendered from the project's credentials, and its
    container when `image_id` is given. With `subnet` (the internal network's), the gateway
    reaches Chroma at its static address there; without, on its own loopback (a Kubernetes pod)."""
    settings = project.settings
    if settings.rbac:
        missing = uncovered_actions(project.credentials.roles or {})
        if missing:
            raise ChromactlError(f"the gateway's route table has no route for action {missing[0]!r}, "
                                 "which a role in authz.yaml grants",
                                 hint="remove the action from roles_mapping, or update chromactl")
    chroma, front = internal_addresses(subnet) if subnet else (None, None)
    probe = None
    if settings.auth == "basic" and project.probe_secret:  # its exact header is spared the per-address limit
        probe = credential_headers(settings, PROBE_USER, project.probe_secret)["Authorization"]
    rendered = render_gateway(settings, project.credentials, listen=listen,
                              upstream=f"{chroma}:{CONTAINER_PORT}" if chroma else UPSTREAM,
                              tls=(tls.cert, tls.key) if tls is not None else None, probe_header=probe)
    files = {name: ConfigFile(text.encode(), 0o600, *user) for name, text in rendered.items()}
    spec = gateway_spec(str(project.root), settings, config_volume_name(settings), image_id, user, front) \
        if image_id is not None else None
    return GatewayPlan(files, user, spec)
