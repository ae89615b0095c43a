"""`chromactl status`: every instance's state, health, version, and whether auth is
really enforced (probed, not assumed), and whether the files changed since it started."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from chromactl.errors import ChromactlError
from chromactl.plan import plan_container
from chromactl.probe import heartbeat, probe_auth, server_version
from chromactl.project import Project, load_project
from chromactl.spec import LABEL_AUTH, LABEL_CONFIG, LABEL_PROJECT, container_name, url_for, volume_name


@dataclass(frozen=True)
class InstanceStatus:
    name: str
    container: str
    state: str  # running, exited, ..., or missing
    healthy: bool
    heartbeat_ms: float | None
    version: str | None
    image: str | None
    url: str | None
    volume: str | None
    auth_mode: str | None
    auth_enforced: bool | None
    drift: bool | None  # files changed since the container was created; None: cannot tell
    project: str | None = None


def status(root: Path, *, all_instances: bool = False) -> list[InstanceStatus]:
    from chromactl.engine import Engine

    engine = Engine.connect()
    if all_instances:
        containers = engine.containers()
        jobs = [(info, None) for info in containers]
    else:
        project = load_project(root.absolute())
        info = engine.container(container_name(project.settings))
        if info is not None and info.labels.get(LABEL_PROJECT) != str(project.root):
            raise ChromactlError(f"container {info.name} belongs to another project ({info.labels.get(LABEL_PROJECT)})")
        if info is None:
            return [_missing(project)]
        jobs = [(info, project)]
    if not jobs:
        return []
    with ThreadPoolExecutor(max_workers=min(16, len(jobs))) as pool:
        return list(pool.map(lambda job: _inspect(engine, *job), jobs))


def _missing(project: Project) -> InstanceStatus:
    s = project.settings
    return InstanceStatus(s.name, container_name(s), "missing", False, None, None, s.image, url_for(s.host, s.port),
                          volume_name(s), s.auth, None, None, str(project.root))


def _load(path: str | None) -> Project | None:
    if not path:
        return None
    try:
        return load_project(Path(path))
    except ChromactlError:
        return None


def _inspect(engine, info, project: Project | None) -> InstanceStatus:
    project = project or _load(info.labels.get(LABEL_PROJECT))
    url = url_for(*info.published) if info.published else None
    auth_mode = info.labels.get(LABEL_AUTH)
    beat = heartbeat(url) if url and info.state == "running" else None
    version = enforced = None
    healthy = False
    if beat is not None and beat.ok:
        version = server_version(url, beat.api)
        if auth_mode == "none":
            healthy = True
        else:
            settings = project.settings if project else None
            probe = probe_auth(url, beat.api, settings, project.probe_secret if project else None)
            enforced = probe.enforced
            # Healthy: strangers refused, and (where chromactl holds the probe secret) users accepted.
            healthy = probe.enforced and (probe.credential_status is None or probe.accepted)
    return InstanceStatus(
        name=info.labels.get("org.chromactl.name", info.name), container=info.name, state=info.state,
        healthy=healthy, heartbeat_ms=beat.latency_ms if beat else None, version=version, image=info.image,
        url=url, volume=info.volume, auth_mode=auth_mode, auth_enforced=enforced,
        drift=_drift(engine, info, project), project=info.labels.get(LABEL_PROJECT))


def _drift(engine, info, project: Project | None) -> bool | None:
    if project is None:
        return None
    try:
        image = engine.image_attrs(project.settings.image)
        if image is None:
            return True
        spec = plan_container(project, image["Id"], (image.get("Config") or {}).get("WorkingDir"))
    except ChromactlError:
        return None
    return spec.config_hash != info.labels.get(LABEL_CONFIG)
