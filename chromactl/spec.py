"""The container chromactl runs for a project, as plain data, built before anything
touches the engine. Pure: the caller reads the files and hands in their contents."""

from __future__ import annotations

import hashlib
import json
import shlex
from dataclasses import asdict, dataclass, field, replace

from chromactl import __version__
from chromactl.envfile import container_path
from chromactl.settings import Settings

CONTAINER_PORT = 8000
LABEL_PREFIX = "org.chromactl."
LABEL_PROJECT = LABEL_PREFIX + "project"
LABEL_NAME = LABEL_PREFIX + "name"
LABEL_CONFIG = LABEL_PREFIX + "config-hash"
LABEL_VERSION = LABEL_PREFIX + "version"
LABEL_AUTH = LABEL_PREFIX + "auth"
LABEL_SERVICE = LABEL_PREFIX + "service"  # "chroma" or "gateway"


def container_name(settings: Settings) -> str:
    return f"chromactl-{settings.name}"


def volume_name(settings: Settings) -> str:
    """The data volume: chromactl-<name>-data unless restore or upgrade switched it."""
    return settings.data_volume or f"chromactl-{settings.name}-data"


def gateway_name(settings: Settings) -> str:
    return f"chromactl-{settings.name}-gateway"


def network_name(settings: Settings) -> str:
    """The project's private network, when a gateway stands in front of Chroma."""
    return f"chromactl-{settings.name}"


@dataclass(frozen=True)
class Mount:
    source: str  # absolute host path
    target: str  # path in the container
    read_only: bool = True


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
    network: str | None = None  # a network's name, or "container:NAME" to join that container's namespace
    command: tuple[str, ...] | None = None
    container_port: int = CONTAINER_PORT
    user: str | None = None  # uid:gid; None: the image's user

    @property
    def config_hash(self) -> str:
        return self.labels[LABEL_CONFIG]


def labelled(spec: ContainerSpec, project_root: str, settings: Settings, service: str, image_id: str,
             files: dict[str, bytes]) -> ContainerSpec:
    """The spec with chromactl's labels, among them a hash of everything that shapes the
    container: when it changes, the container is recreated."""
    fingerprint = {
        "spec": asdict(spec),
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
               command: tuple[str, ...] | None = None, namespace_of: str | None = None,
               tls_dir: tuple[str, str] | None = None, tls_files: dict[str, bytes] | None = None) -> ContainerSpec:
    """The Chroma container. `mounted_files` maps each credential file it mounts to its
    content: a change in any of them (a user added or rotated) changes the configuration
    hash. Behind a gateway it mounts none, publishes nothing and joins the network
    namespace of the gateway's container (`namespace_of`, its id: a new gateway means a
    new Chroma container too). Serving TLS itself, it mounts `tls_dir` (host folder,
    container folder), whose files' content is part of the hash: a new certificate means
    a new container (uvicorn reads it only at start)."""
    mounts = tuple(Mount(f"{project_root}/{name}", container_path(name)) for name in sorted(mounted_files))
    if tls_dir:
        mounts += (Mount(*tls_dir),)
    behind = settings.uses_gateway
    spec = ContainerSpec(
        name=container_name(settings), image=settings.image, environment=dict(environment), mounts=mounts,
        volume=volume_name(settings), data_path=data_path, host=settings.host, port=settings.port,
        publish=not behind, network=f"container:{namespace_of or gateway_name(settings)}" if behind else None,
        command=command,
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


def loopback_command(cmd: list[str] | None) -> tuple[str, ...] | None:
    """The image's command with every `--host ADDR` made `--host 127.0.0.1` (images run
    as `chroma run --host 0.0.0.0 ...` or `uvicorn ... --host 0.0.0.0`), or None when it
    names no host and the environment above does the job. Read from the image, not assumed."""
    cmd = list(cmd or [])
    changed = False
    for index, word in enumerate(cmd):
        if word == "--host" and index + 1 < len(cmd) and not cmd[index + 1].startswith("$"):
            changed |= cmd[index + 1] != "127.0.0.1"
            cmd[index + 1] = "127.0.0.1"
        elif word.startswith("--host=") and word != "--host=127.0.0.1":
            cmd[index] = "--host=127.0.0.1"
            changed = True
    return tuple(cmd) if changed else None


def probe_host(host: str) -> str:
    """Where to reach a server published on `host` from this machine."""
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host == "::":
        return "::1"
    return host


def url_for(host: str, port: int, scheme: str = "http") -> str:
    address = probe_host(host)
    return f"{scheme}://[{address}]:{port}" if ":" in address else f"{scheme}://{address}:{port}"


def docker_run_command(spec: ContainerSpec, env_file: str | None) -> str:
    """The equivalent `docker run`. The environment stays in the env file, so no secret
    ever reaches a command line."""
    host = f"[{spec.host}]" if ":" in spec.host else spec.host
    args = ["docker", "run", "--detach", "--name", spec.name]
    if env_file:
        args += ["--env-file", env_file]
    if spec.network:
        args += ["--network", spec.network]
    if spec.user:
        args += ["--user", spec.user]
    for mount in spec.mounts:
        args += ["--volume", f"{mount.source}:{mount.target}" + (":ro" if mount.read_only else "")]
    if spec.volume:
        args += ["--volume", f"{spec.volume}:{spec.data_path}"]
    if spec.publish:
        args += ["--publish", f"{host}:{spec.port}:{spec.container_port}"]
    args += ["--restart", spec.restart_policy]
    for key, value in spec.labels.items():
        args += ["--label", f"{key}={value}"]
    args.append(spec.image)
    args += list(spec.command or ())
    return " ".join(shlex.quote(a) for a in args)
