"""The container chromactl runs for a project, as plain data, built before anything
touches the engine. Pure: the caller reads the files and hands in their contents."""

from __future__ import annotations

import hashlib
import json
import shlex
from dataclasses import asdict, dataclass, field

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


def container_name(settings: Settings) -> str:
    return f"chromactl-{settings.name}"


def volume_name(settings: Settings) -> str:
    return f"chromactl-{settings.name}-data"


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
    volume: str
    data_path: str
    host: str
    port: int
    labels: dict[str, str] = field(default_factory=dict)
    restart_policy: str = "unless-stopped"

    @property
    def config_hash(self) -> str:
        return self.labels[LABEL_CONFIG]


def build_spec(project_root: str, settings: Settings, environment: dict[str, str],
               credential_files: dict[str, bytes], image_id: str, data_path: str) -> ContainerSpec:
    """`credential_files` maps each file the container mounts to its content: a change
    in any of them (a user added or rotated) changes the configuration hash."""
    mounts = tuple(Mount(f"{project_root}/{name}", container_path(name)) for name in sorted(credential_files))
    spec = ContainerSpec(
        name=container_name(settings), image=settings.image, environment=dict(environment), mounts=mounts,
        volume=volume_name(settings), data_path=data_path, host=settings.host, port=settings.port,
    )
    fingerprint = {
        "spec": asdict(spec),
        "image_id": image_id,
        "files": {name: hashlib.sha256(content).hexdigest() for name, content in sorted(credential_files.items())},
    }
    config_hash = hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()[:16]
    labels = {
        LABEL_PROJECT: project_root,
        LABEL_NAME: settings.name,
        LABEL_CONFIG: config_hash,
        LABEL_VERSION: __version__,
        LABEL_AUTH: settings.auth,
    }
    return ContainerSpec(**{**asdict(spec), "mounts": mounts, "labels": labels})


def probe_host(host: str) -> str:
    """Where to reach a server published on `host` from this machine."""
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host == "::":
        return "::1"
    return host


def url_for(host: str, port: int) -> str:
    address = probe_host(host)
    return f"http://[{address}]:{port}" if ":" in address else f"http://{address}:{port}"


def docker_run_command(spec: ContainerSpec, env_file: str) -> str:
    """The equivalent `docker run`. The environment stays in the env file, so no secret
    ever reaches a command line."""
    host = f"[{spec.host}]" if ":" in spec.host else spec.host
    args = ["docker", "run", "--detach", "--name", spec.name, "--env-file", env_file]
    for mount in spec.mounts:
        args += ["--volume", f"{mount.source}:{mount.target}" + (":ro" if mount.read_only else "")]
    args += ["--volume", f"{spec.volume}:{spec.data_path}", "--publish", f"{host}:{spec.port}:{CONTAINER_PORT}",
             "--restart", spec.restart_policy]
    for key, value in spec.labels.items():
        args += ["--label", f"{key}={value}"]
    args.append(spec.image)
    return " ".join(shlex.quote(a) for a in args)
