"""The container chromactl runs for a project, as plain data, built before anything
touches the engine. Pure: the caller reads the files and hands in their contents."""

from __future__ import annotations

import hashlib
import ipaddress
import json
import shlex
from urllib.parse import urlsplit
from dataclasses import asdict, dataclass, field, replace

from chromactl import __version__
from chromactl.envfile import MOUNT_DIR
from chromactl.settings import Settings

CONTAINER_PORT = 8000
LABEL_PREFIX = "org.chromactl."
LABEL_PROJECT = LABEL_PREFIX + "project"
LABEL_NAME = LABEL_PREFIX + "name"
LABEL_CONFIG = LABEL_PREFIX + "config-hash"
LABEL_VERSION = LABEL_PREFIX + "version"
LABEL_AUTH = LABEL_PREFIX + "auth"
LABEL_SERVICE = LABEL_PREFIX + "service"  # "chroma" or "gateway"
LABEL_ORIGIN = LABEL_PREFIX + "origin"  # "compose": started by Compose from an export, not by `chromactl up`


def container_name(settings: Settings) -> str:
    return f"chromactl-{settings.name}"


def volume_name(settings: Settings) -> str:
    """The data volume: chromactl-<name>-data unless restore or upgrade switched it."""
    return settings.data_volume or f"chromactl-{settings.name}-data"


def gateway_name(settings: Settings) -> str:
    return f"chromactl-{settings.name}-gateway"


def network_name(settings: Settings) -> str:
    """The project's network, on which the gateway publishes the port."""
    return f"chromactl-{settings.name}"


def internal_network_name(settings: Settings) -> str:
    """The network Chroma lives on behind a gateway: internal (no way out), and with no
    address on the host's side of its bridge, so that nothing but the gateway reaches it."""
    return f"chromactl-{settings.name}-internal"


INTERNAL_PREFIX = 28  # 14 addresses: Chroma and the gateway need two


def internal_addresses(subnet: str) -> tuple[str, str]:
    """(Chroma's, the gateway's) static addresses on an internal network's subnet."""
    network = ipaddress.ip_network(subnet)
    return str(network.network_address + 2), str(network.network_address + 3)


@dataclass(frozen=True)
class Attachment:
    """A network a container is attached to, with a static IPv4 address on it (or None)."""

    network: str
    address: str | None = None


@dataclass(frozen=True)
class Mount:
    source: str  # a volume's name ("volume"), or an absolute host path ("bind")
    target: str  # path in the container
    read_only: bool = True
    kind: str = "volume"


@dataclass(frozen=True)
class LogRotation:
    """The container's log kept by the engine's json-file driver, rotated by size: at most
    `max_files` files of `max_size` each (Docker's units: 10m is 10 MiB)."""

    max_size: str
    max_files: int

    def options(self) -> dict[str, str]:
        """The driver's options, as Docker and Compose spell them."""
        return {"max-size": self.max_size, "max-file": str(self.max_files)}


@dataclass(frozen=True)
class ContainerSpec:
    name: str
    image: str
    environment: dict[str, str]
    mounts: tuple[Mount, ...]
    volume: str | None  # the named data volume, mounted at data_path
    data_path: str | None
    host: str
    port: int
    labels: dict[str, str] = field(default_factory=dict)
    restart_policy: str = "unless-stopped"
    publish: bool = True  # publish container_port on host:port; Chroma behind a gateway is not
    networks: tuple[Attachment, ...] = ()  # the first is the one it is created on; none: the engine's default
    command: tuple[str, ...] | None = None
    container_port: int = CONTAINER_PORT
    user: str | None = None  # uid:gid; None: the image's user
    tmpfs: tuple[str, ...] = ()  # paths that start empty at every start (nothing survives a crash there)
    log_rotation: LogRotation | None = None  # None: the engine's default log driver and options

    @property
    def config_hash(self) -> str:
        return self.labels[LABEL_CONFIG]


def labelled(spec: ContainerSpec, project_root: str, settings: Settings, service: str, image_id: str,
             files: dict[str, bytes]) -> ContainerSpec:
    """The spec with chromactl's labels, among them a hash of everything that shapes the
    container: when it changes, the container is recreated."""
    shape = asdict(spec)
    if shape["log_rotation"] is None:  # as before log rotation existed: an upgrade recreates nothing for it
        del shape["log_rotation"]
    fingerprint = {
        "spec": shape,
        "image_id": image_id,
        "files": {name: hashlib.sha256(content).hexdigest() for name, content in sorted(files.items())},
    }
    config_hash = hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()[:16]
    labels = {
        LABEL_PROJECT: project_root,
        LABEL_NAME: settings.name,
        LABEL_SERVICE: service,
        LABEL_CONFIG: config_hash,
        LABEL_VERSION: __version__,
        LABEL_AUTH: settings.auth,
    }
    return replace(spec, labels=labels)


def build_spec(project_root: str, settings: Settings, environment: dict[str, str],
               mounted_files: dict[str, bytes], image_id: str, data_path: str,
               command: tuple[str, ...] | None = None, internal: Attachment | None = None,
               config_volume: str | None = None, tls_files: dict[str, bytes] | None = None) -> ContainerSpec:
    """The Chroma container. `mounted_files` maps each credential file it reads (from the
    project's config volume, at /etc/chromactl) to its content, and so do `tls_files` when
    it serves TLS itself: a change in any (a user added or rotated, a new certificate)
    changes the configuration hash, and Chroma, which reads them only at start, is
    recreated. Behind a gateway it reads none, publishes nothing and lives on the internal
    network alone, at a static address (`internal`)."""
    mounts = (Mount(config_volume, MOUNT_DIR),) if config_volume and (mounted_files or tls_files) else ()
    behind = settings.uses_gateway
    spec = ContainerSpec(
        name=container_name(settings), image=settings.image, environment=dict(environment), mounts=mounts,
        volume=volume_name(settings), data_path=data_path, host=settings.host, port=settings.port,
        publish=not behind, networks=(internal,) if behind and internal else (), command=command,
    )
    return labelled(spec, project_root, settings, "chroma", image_id, {**mounted_files, **(tls_files or {})})


# Chroma 0.5/0.6's upstream image: an entrypoint that expands these variables and hands the
# words to uvicorn (used when the image's own command cannot be read, e.g. for --dry-run).
UPSTREAM_0X_CMD = ("--workers ${CHROMA_WORKERS} --host ${CHROMA_HOST_ADDR} --port ${CHROMA_HOST_PORT} "
                   "--proxy-headers --log-config ${CHROMA_LOG_CONFIG} --timeout-keep-alive ${CHROMA_TIMEOUT_KEEP_ALIVE}")


def tls_command(cmd: list[str] | None, key_path: str, cert_path: str) -> tuple[str, ...]:
    """Chroma 0.x's command with uvicorn's TLS options added: appended to the one string of
    the upstream shape (its entrypoint splits it into words), or as words of their own."""
    words = list(cmd) if cmd else [UPSTREAM_0X_CMD]
    extra = ["--ssl-keyfile", key_path, "--ssl-certfile", cert_path]
    if len(words) == 1 and " " in words[0]:
        return (words[0] + " " + " ".join(extra),)
    return tuple(words + extra)


def probe_host(host: str, engine_address: str | None = None) -> str:
    """Where to reach a server published on `host` from this machine: on a wildcard address,
    this machine's loopback, or, for a remote engine (tcp://, ssh://), the engine's host."""
    if host in ("0.0.0.0", "", "::"):
        remote = urlsplit(engine_address).hostname if engine_address and "://" in engine_address else None
        if remote and not engine_address.startswith(("unix://", "npipe://")):
            return remote
        return "::1" if host == "::" else "127.0.0.1"
    return host


def url_for(host: str, port: int, scheme: str = "http", engine_address: str | None = None) -> str:
    address = probe_host(host, engine_address)
    return f"{scheme}://[{address}]:{port}" if ":" in address else f"{scheme}://{address}:{port}"


def docker_run_command(spec: ContainerSpec, env_file: str | None) -> str:
    """The equivalent `docker run`. The environment stays in the env file, so no secret
    ever reaches a command line."""
    host = f"[{spec.host}]" if ":" in spec.host else spec.host
    args = ["docker", "run", "--detach", "--name", spec.name]
    if env_file:
        args += ["--env-file", env_file]
    if spec.networks:
        first = spec.networks[0]
        args += ["--network", first.network] + (["--ip", first.address] if first.address else [])
    for path in spec.tmpfs:
        args += ["--tmpfs", path]
    if spec.user:
        args += ["--user", spec.user]
    for mount in spec.mounts:
        args += ["--volume", f"{mount.source}:{mount.target}" + (":ro" if mount.read_only else "")]  # volume or path
    if spec.volume:
        args += ["--volume", f"{spec.volume}:{spec.data_path}"]
    if spec.publish:
        args += ["--publish", f"{host}:{spec.port}:{spec.container_port}"]
    args += ["--restart", spec.restart_policy]
    if spec.log_rotation is not None:
        args += ["--log-driver", "json-file"]
        for key, value in spec.log_rotation.options().items():
            args += ["--log-opt", f"{key}={value}"]
    for key, value in spec.labels.items():
        args += ["--label", f"{key}={value}"]
    args.append(spec.image)
    args += list(spec.command or ())
    lines = [" ".join(shlex.quote(a) for a in args)]
    for more in spec.networks[1:]:  # attached before the start in `up`; shown as what it amounts to
        lines.append(" ".join(shlex.quote(a) for a in ["docker", "network", "connect", *(
            ["--ip", more.address] if more.address else []), more.network, spec.name]))
    return "\n".join(lines)
