"""`chromactl status`: every instance's state, health, version, and whether auth is
really enforced (probed, not assumed), and whether the files changed since it started.
An instance is a Chroma container and, when the project has one, its gateway.

The engine is asked from this thread only (the Docker SDK's client is not promised to be
thread safe); the HTTP probes of several instances run in parallel."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from enum import Enum
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

from chromactl.audit import RATE_WINDOW_S, Traffic, parse_lines, split_lines, traffic
from chromactl.certs import TlsMaterial, endpoint, read_tls
from chromactl.credentials import CHEAP_ROUNDS, hash_cost
from chromactl.engine_api import ContainerInfo, Engine
from chromactl.errors import ChromactlError
from chromactl.configvol import config_volume_name, delivered, digest
from chromactl.gateway_files import gateway_user
from chromactl.images import chroma_version
from chromactl.plan import plan_container, plan_gateway
from chromactl.probe import Target, heartbeat, http_status, port_open, probe_auth, server_version
from chromactl.project import Project, load_project
from chromactl.credentials import credential_digests
from chromactl.records import last_backup, operation, served
from chromactl.recovery import describe
from chromactl.spec import (
    LABEL_AUTH,
    LABEL_CONFIG,
    LABEL_NAME,
    LABEL_ORIGIN,
    LABEL_PROJECT,
    LABEL_SERVICE,
    container_name,
    gateway_name,
    internal_network_name,
    url_for,
    volume_name,
)
from chromactl.volumes import volume_bytes


class Pending(str, Enum):
    """What `chromactl up` would do to bring an instance to its files."""

    PULL = "pull"  # the image is not on the engine
    CREATE = "create"  # a container is missing
    RECREATE = "recreate"  # its configuration changed
    RELOAD = "reload"  # the gateway's credentials or certificate changed
    REMOVE = "remove"  # a gateway the project no longer wants


@dataclass(frozen=True)
class PendingAction:
    action: Pending
    target: str  # the container (or image) concerned


@dataclass(frozen=True)
class InstanceStatus:
    name: str
    container: str
    state: str  # running, exited, ..., or missing
    healthy: bool
    heartbeat_ms: float | None
    api_version: str | None  # what the server's /version says
    image: str | None
    url: str | None
    volume: str | None
    auth_mode: str | None
    auth_enforced: bool | None
    drift: bool | None  # files changed since the containers were created; None: cannot tell
    project: str | None = None
    gateway: ContainerInfo | None = None  # the gateway in front, when there is one
    pending: tuple[PendingAction, ...] | None = None  # what `chromactl up` would do; None: cannot tell
    problem: str | None = None  # why a running instance does not answer, and what to do
    hint: str | None = None
    costly_users: tuple[str, ...] = ()  # basic auth users whose hash costs each request > a few ms
    tls: TlsMaterial | None = None  # the certificate served, when TLS
    tls_mode: str | None = None
    volume_bytes: int | None = None  # the data volume's size; None: cannot tell
    last_backup: dict | None = None  # the last `chromactl backup`: path, created, age_seconds
    origin: str = "chromactl"  # "compose": started by Compose from `chromactl export compose`
    traffic: Traffic | None = None  # the requests through a running gateway in the last minute

    @property
    def chroma_version(self) -> str | None:
        return chroma_version(self.image or "", self.api_version)


def status(root: Path | None, connect: Callable[[], Engine]) -> list[InstanceStatus]:
    """The project's instance (root), or every chromactl instance on the engine (root None)."""
    engine = connect()
    project = None
    if root is None:
        containers = engine.containers()
    else:
        project = load_project(root)
        containers = engine.containers(str(project.root))
    groups: dict[tuple[str, str, str], dict] = {}
    for info in containers:
        key = (info.labels.get(LABEL_PROJECT, ""), info.labels.get(LABEL_NAME, info.name),
               info.labels.get(LABEL_ORIGIN, "chromactl"))
        groups.setdefault(key, {})[info.labels.get(LABEL_SERVICE, "chroma")] = info
    if project is not None and not groups:
        groups[(str(project.root), project.settings.name, "chromactl")] = {}  # nothing of it runs
    seen = [_from_engine(engine, key, services, project) for key, services in groups.items()]
    if not seen:
        return []
    with ThreadPoolExecutor(max_workers=min(16, len(seen))) as pool:
        return list(pool.map(_probe, seen))


def _missing(project: Project) -> InstanceStatus:
    """A project none of whose containers exist: where it would serve (https with TLS), and
    the certificate it would serve when one was issued."""
    s = project.settings
    tls = read_tls(project)
    return InstanceStatus(s.name, container_name(s), "missing", False, None, None, s.image,
                          url_for(s.host, s.port, "https" if s.uses_tls else "http"), volume_name(s), s.auth, None,
                          None, str(project.root), tls=tls, tls_mode=s.tls if tls is not None else None)


def _load(path: str | None) -> Project | None:
    if not path:
        return None
    try:
        return load_project(Path(path))
    except ChromactlError:
        return None


@dataclass(frozen=True)
class _Seen:
    """What the engine says of one instance, before any HTTP probe."""

    status: InstanceStatus
    project: Project | None
    exposed_around_gateway: bool
    target: Target | None = None  # the URL, and for https how to trust it


def _from_engine(engine: Engine, key: tuple[str, str, str], services: dict, project: Project | None) -> _Seen:
    project_path, name, origin = key
    if not services:
        return _Seen(_missing(project), project, False)
    if project is None or str(project.root) != project_path:
        project = _load(project_path)
    if origin == "compose":
        return _from_compose(engine, name, services, project, project_path)
    chroma, gateway = services.get("chroma"), services.get("gateway")
    front = gateway or chroma
    state = chroma.state if chroma else "missing"
    if gateway is not None and state == "running" and gateway.state != "running":
        state = f"gateway {gateway.state}"
    if gateway is None and project is not None and project.settings.uses_gateway and state == "running":
        state = "gateway missing"
    tls = read_tls(project) if project is not None else None
    pending = _pending(engine, chroma, gateway, project, tls)
    target = endpoint(*front.published, tls, engine.address) if front and front.published else None
    status = InstanceStatus(
        name=name, container=chroma.name if chroma else (gateway.name if gateway else name), state=state,
        healthy=False, heartbeat_ms=None, api_version=None, image=chroma.image if chroma else None,
        url=target.url if target else None,
        volume=chroma.volume if chroma else None, auth_mode=front.labels.get(LABEL_AUTH) if front else None,
        auth_enforced=None, drift=None if pending is None else bool(pending), project=project_path or None,
        gateway=gateway, pending=pending, costly_users=costly_users(project), tls=tls,
        tls_mode=project.settings.tls if tls is not None else None, traffic=recent_traffic(engine, gateway),
        **_data_facts(engine, chroma, project))
    exposed = gateway is not None and chroma is not None and chroma.published is not None
    return _Seen(status, project, exposed, target)


def _from_compose(engine: Engine, name: str, services: dict, project: Project | None, project_path: str) -> _Seen:
    """A deployment Compose started from an export: probed like any other, but its
    containers are Compose's to change (chromactl's `up` would not touch them)."""
    chroma, gateway = services.get("chroma"), services.get("gateway")
    front = gateway or chroma
    tls = read_tls(project) if project is not None else None
    target = endpoint(*front.published, tls, engine.address) if front and front.published else None
    state = chroma.state if chroma else "missing"
    if gateway is not None and state == "running" and gateway.state != "running":
        state = f"gateway {gateway.state}"
    status = InstanceStatus(
        name=name, container=chroma.name if chroma else front.name, state=state, healthy=False, heartbeat_ms=None,
        api_version=None, image=chroma.image if chroma else None, url=target.url if target else None,
        volume=chroma.volume if chroma else None, auth_mode=front.labels.get(LABEL_AUTH) if front else None,
        auth_enforced=None, drift=None, project=project_path or None, gateway=gateway, pending=None, tls=tls,
        tls_mode=project.settings.tls if tls is not None else None, origin="compose",
        traffic=recent_traffic(engine, gateway),
        hint="started by Compose from `chromactl export compose`: change it with docker-compose, not `chromactl up`",
        **_data_facts(engine, chroma, project))
    return _Seen(status, project, False, target)


def recent_traffic(engine: Engine, gateway: ContainerInfo | None, now: float | None = None) -> Traffic | None:
    """The request and refusal rates of a running gateway, from its audit lines of the
    last minute; None when no gateway runs or its log cannot be read."""
    if gateway is None or gateway.state != "running":
        return None
    now = time.time() if now is None else now
    try:
        lines = split_lines(engine.stdout_log(gateway.name, since=now - RATE_WINDOW_S))
        return traffic(parse_lines(lines).entries, now)
    except ChromactlError:
        return None


def _data_facts(engine: Engine, chroma: ContainerInfo | None, project: Project | None) -> dict:
    try:
        size = volume_bytes(engine, chroma.volume if chroma else None)
    except ChromactlError:
        size = None
    return {"volume_bytes": size, "last_backup": last_backup(project.root) if project else None}


def _probe(seen: _Seen) -> InstanceStatus:
    """Heartbeat, version and auth over HTTP: no engine calls here (this runs in threads).
    An interrupted operation, or a revocation not yet in effect, makes it unhealthy."""
    status = _probe_http(seen)
    project = seen.project
    if project is None or status.origin != "chromactl":
        return status
    interrupted = operation(project.root)
    if interrupted is not None:
        return replace(status, healthy=False, problem=describe(interrupted),
                       hint="`chromactl up` finishes it or puts it back")
    given = served(project.root)  # unknown (a project from before this record): no alarm
    if status.state != "missing" and given is not None and given - credential_digests(project.credentials):
        return replace(status, healthy=False, problem="a revocation (a user removed, a secret rotated, a role "
                       "changed) has not reached the running server: what it took away still works there",
                       hint="`chromactl up` applies it")
    return status


def _probe_http(seen: _Seen) -> InstanceStatus:
    status, project, target = seen.status, seen.project, seen.target
    if not status.url or status.state != "running":
        return status
    beat = heartbeat(target)
    if beat.tls_error:
        return replace(status, problem=f"its certificate does not verify with the project's CA: {beat.tls_error}",
                       hint="`chromactl tls renew`, or check tls_cert and tls_ca")
    if not beat.ok:
        problem, hint = _why_silent(status, target)
        return replace(status, heartbeat_ms=None, problem=problem, hint=hint)
    version = server_version(target, beat.api)
    enforced = None
    if status.auth_mode == "none":
        healthy = True
    else:
        settings = project.settings if project else None
        probe = probe_auth(target, beat.api, settings, project.probe_secret if project else None)
        enforced = probe.enforced
        # Healthy: strangers refused, and (where chromactl holds the probe secret) users accepted
        # and held to their roles.
        healthy = probe.enforced and (probe.credential_status is None or probe.accepted) \
            and probe.roles_enforced is not False
    if seen.exposed_around_gateway:
        healthy = False  # Chroma reachable around its gateway
    return replace(status, healthy=healthy, heartbeat_ms=beat.latency_ms, api_version=version, auth_enforced=enforced)


def costly_users(project: Project | None) -> tuple[str, ...]:
    """Users whose bcrypt hash makes each request naming them cost the server a slow hash:
    natively above CHEAP_ROUNDS (e.g. the old default of 12); behind the gateway any bcrypt
    (left by an earlier chromactl): strangers can time it to learn the name exists."""
    if project is None or project.settings.auth != "basic":
        return ()
    floor = 0 if project.settings.uses_gateway else CHEAP_ROUNDS
    return tuple(u.name for u in project.credentials.users if (hash_cost(u.password_hash) or 0) > floor)


def _why_silent(status: InstanceStatus, target: Target) -> tuple[str, str]:
    """Why running containers do not answer their heartbeat, told from what the port does."""
    parts = urlsplit(status.url)
    if not port_open(parts.hostname, parts.port):
        return (f"port {parts.port} does not answer although the containers run (Docker's userland proxy for it "
                "may have died)", "`chromactl up` restarts the gateway, which publishes the port again")
    answer = http_status(target, "/api/v2/heartbeat")
    if status.gateway and answer in (502, 503, 504):
        return (f"the gateway answers but Chroma behind it does not (HTTP {answer})",
                "see `chromactl logs`; `chromactl up` starts it again")
    return (f"the heartbeat got {f'HTTP {answer}' if answer else 'no answer'}",
            "see `chromactl logs` (and `chromactl logs --service gateway`)")


def _pending(engine: Engine, chroma: ContainerInfo | None, gateway: ContainerInfo | None, project: Project | None,
             tls: TlsMaterial | None) -> tuple[PendingAction, ...] | None:
    """What `chromactl up` would do to bring the instance to its files: () for nothing,
    None when it cannot tell."""
    if project is None or chroma is None:
        return None
    settings = project.settings
    try:
        image = engine.image(settings.image)
        if image is None:
            return (PendingAction(Pending.PULL, settings.image),)
        if not settings.uses_gateway:
            spec = plan_container(project, image, tls=tls)
            actions = [PendingAction(Pending.RECREATE, chroma.name)] \
                if spec.config_hash != chroma.labels.get(LABEL_CONFIG) else []
            if gateway is not None:
                actions.append(PendingAction(Pending.REMOVE, gateway.name))
            return tuple(actions)
        gateway_image = engine.image(settings.gateway_image)
        internal = engine.network(internal_network_name(settings))
        if internal is None or internal.subnet is None:
            return (PendingAction(Pending.CREATE, internal_network_name(settings)),)
        if gateway is None or gateway_image is None:
            return (PendingAction(Pending.CREATE, gateway_name(settings)),)
        plan = plan_gateway(project, gateway_user(), gateway_image.id, tls=tls, subnet=internal.subnet)
        actions = []
        if plan_container(project, image, subnet=internal.subnet).config_hash != chroma.labels.get(LABEL_CONFIG):
            actions.append(PendingAction(Pending.RECREATE, chroma.name))
        if plan.spec.config_hash != gateway.labels.get(LABEL_CONFIG):
            actions.append(PendingAction(Pending.RECREATE, gateway.name))
        elif delivered(engine, str(project.root), config_volume_name(settings), settings.gateway_image) != \
                digest(plan.files):  # the engine's copy of the files differs from the project's
            actions.append(PendingAction(Pending.RELOAD, gateway.name))
        return tuple(actions)
    except ChromactlError:
        return None
