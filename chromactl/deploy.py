"""Reconcile and prove: bring a loaded project's containers to what its files say, then
prove the result (the heartbeat answers, strangers are refused, chromactl's probe user
is accepted, Chroma cannot be reached around its gateway). Below the commands: `up`,
`creds`, `tls renew`, `backup`, `restore` and `upgrade` all come through here with a
project loaded once and an engine connected once.

Every outcome is typed (Action, Applied, Deployed); chromactl.output phrases them."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from enum import Enum
from pathlib import Path
from typing import Callable, Protocol

from chromactl.certs import TlsMaterial, endpoint, ensure_tls, machine_names, trusted
from chromactl.credentials import credential_digests
from chromactl.engine_api import ContainerInfo, Engine, EngineError, EngineUnavailable, ImageInfo, NoSuchImage
from chromactl.errors import EXIT_NOT_HEALTHY, ChromactlError
from chromactl.gateway import CHECK_COMMAND as GATEWAY_CHECK
from chromactl.gateway import RELOAD_COMMAND as GATEWAY_RELOAD
from chromactl.configvol import config_volume_name, deliver
from chromactl.gateway_files import gateway_user
from chromactl.envfile import ENV_FILE, legacy_listen, parse_env_file
from chromactl.archive import holds_file
from chromactl.audit_archive import remove_gateway
from chromactl.images import data_path, persist_path_of
from chromactl.plan import (
    check_image_enforces_auth,
    check_probe,
    check_reachable_from_here,
    check_scopes,
    native_config_files,
    plan_container,
    plan_gateway,
    unknown_data_path,
)
from chromactl.probe import HTTP_PROBER, AuthProbe, Endpoint, Heartbeat, Prober
from chromactl.project import Project, load_project, rewrite_env_file
from chromactl.records import held_volume, record_served, record_volume
from chromactl.settings import is_loopback
from chromactl.spec import (
    LABEL_CONFIG,
    LABEL_ORIGIN,
    LABEL_PROJECT,
    ContainerSpec,
    container_name,
    gateway_name,
    internal_network_name,
    network_name,
    probe_host,
    volume_name,
)

PULL_POLICIES = ("missing", "always", "never")
LOG_LINES_ON_FAILURE = 20
PROBE_RETRIES, PROBE_PAUSE_S = 10, 0.5  # auth checks that got no answer at all are asked again


class Action(str, Enum):
    """What was done to one container."""

    CREATED = "created"
    RECREATED = "recreated"
    STARTED = "started"
    RESTARTED = "restarted"
    RELOADED = "reloaded"  # the gateway re-read its files (a reload, waited for), without a restart
    UNCHANGED = "unchanged"


class Applied(str, Enum):
    """How a change of the project's files (credentials, certificate) reached the server."""

    RELOADED = "reloaded"  # the gateway reloaded: in effect now, Chroma kept running
    RECREATED = "recreated"  # Chroma was recreated to read them (natively): in effect now
    IN_EFFECT = "in_effect"  # `up` brought the running server to the files some other way
    NOT_RUNNING = "not_running"  # nothing serves: the next `up` starts with the new files
    NO_ENGINE = "no_engine"  # no engine answers: a running server still has the OLD files
    DEFERRED = "deferred"  # --no-apply: a running server still has the OLD files
    FAILED = "failed"  # bringing the server to the files failed: it may still have the OLD ones
    COMPOSE = "compose"  # a deployment Compose started serves the project: export again and restart it

    @property
    def in_effect(self) -> bool:
        """Whether no running server still honours what the change replaced."""
        return self not in (Applied.NO_ENGINE, Applied.DEFERRED, Applied.FAILED, Applied.COMPOSE)


class Reporter(Protocol):
    def step(self, message: str) -> None: ...
    def pull_event(self, event: dict) -> None: ...
    def pull_done(self) -> None: ...
    def build_output(self, text: str) -> None: ...


@dataclass(frozen=True)
class Deployed:
    """A proven deployment."""

    project: Project
    spec: ContainerSpec
    action: Action
    url: str
    tls: TlsMaterial | None = None  # what the server presents; None: plain HTTP
    gateway: ContainerSpec | None = None
    gateway_action: Action | None = None
    container_id: str | None = None
    api_version: str | None = None  # what the server's /version route says (1.x says 1.0.0)
    heartbeat_ms: float | None = None
    auth: AuthProbe | None = None

    @property
    def target(self) -> Endpoint:
        """The URL, and for https how to trust the server."""
        return trusted(self.url, self.tls)


def owned_container(engine: Engine, root: Path, name: str) -> ContainerInfo | None:
    """The project's container of that name, or None; one of another owner is refused."""
    existing = engine.container(name)
    if existing is not None and existing.labels.get(LABEL_PROJECT) != str(root):
        owner = existing.labels.get(LABEL_PROJECT, "something other than chromactl")
        raise ChromactlError(f"a container named {name} already exists and belongs to {owner}",
                             hint="give this project another name: chromactl init --force --name NAME")
    return existing


def compose_containers(engine: Engine, root: Path) -> list[str]:
    """The running containers Compose started for this project from an export."""
    return [c.name for c in engine.containers(str(root))
            if c.labels.get(LABEL_ORIGIN) == "compose" and c.state in ("running", "restarting")]


def deploy(project: Project, engine: Engine, reporter: Reporter, *, pull: str = "missing", build: str | None = None,
           timeout: float = 60, prober: Prober | None = None, start_empty: bool = False) -> Deployed:
    """Bring the project's containers to its files and prove them. Idempotent. A data volume
    that held the project's data and is gone is an error, not a fresh start (unless
    `start_empty`, the operator's explicit choice)."""
    prober = prober or HTTP_PROBER
    volume = volume_name(project.settings)
    if held_volume(project.root) == volume and not start_empty and not engine.volume_exists(volume):
        raise ChromactlError(f"data volume {volume} is gone, and it held this project's data",
                             hint="restore the last backup (`chromactl restore FILE`; `chromactl status` names it), "
                                  "or start with an empty volume on purpose: `chromactl up --start-empty`")
    composed = compose_containers(engine, project.root)
    if composed:
        raise ChromactlError(f"this project runs under Compose ({', '.join(composed)}), started from "
                             "`chromactl export compose`", hint="stop it with `docker-compose down` first, or keep "
                             "managing it with docker-compose")
    if pull not in PULL_POLICIES:
        raise ChromactlError(f"unknown pull policy {pull!r}: use one of {', '.join(PULL_POLICIES)}")
    check_image_enforces_auth(project)
    check_scopes(project)
    check_probe(project)
    check_reachable_from_here(project.settings, engine.address)
    tls = ensure_tls(project, machine=machine_names(engine.address))
    settings = project.settings
    project = refresh_env_file(project, reporter)
    image = ensure_image(engine, settings.image, pull, build, reporter)
    gateway_image = ensure_image(engine, settings.gateway_image, pull, None, reporter) if settings.uses_gateway else None
    owned_container(engine, project.root, container_name(settings))
    spec, action, gateway, gateway_action = _apply_plan(engine, project, image, gateway_image, reporter, tls, prober)
    record_served(project.root, credential_digests(project.credentials))  # what the containers now have
    return _verify(engine, project, spec, action, timeout, gateway, gateway_action, tls, prober)


def refresh_env_file(project: Project, reporter: Reporter) -> Project:
    """Rewrite .chroma_env when an earlier chromactl left variables in it that would keep
    Chroma where no gateway reaches it now (the operator's own variables are kept)."""
    if project.env_text is None:
        return project
    stale = legacy_listen(project.settings, parse_env_file(project.env_text))
    if not stale:
        return project
    reporter.step(f"rewriting {ENV_FILE}: {', '.join(stale)} no longer apply (Chroma has a network of its own)")
    rewrite_env_file(project.root, project.settings)
    return load_project(project.root)


def ensure_image(engine: Engine, image: str, pull: str, build: str | None, reporter: Reporter) -> ImageInfo:
    """The image, present now: built, pulled, or already there, as the policy says."""
    no_registry = "no registry reachable? build the image locally: chromactl up --build DIR"
    if build is not None:
        if "://" not in build and not build.startswith("git@") and not Path(build).is_dir():
            raise ChromactlError(f"--build {build}: no such folder (give a folder with a Dockerfile, or a git URL)")
        reporter.step(f"building {image} from {build}")
        engine.build(build, image, reporter.build_output)
    else:
        present = engine.image(image)
        if pull == "always" or (pull == "missing" and present is None):
            reporter.step(f"pulling {image}")
            try:
                engine.pull(image, reporter.pull_event)
            except EngineUnavailable:
                raise
            except EngineError as exc:
                raise ChromactlError(exc.message, hint=no_registry) from None
            reporter.pull_done()
        elif present is None:
            raise NoSuchImage(f"image {image} is not present and --pull is never",
                              hint="pull it (--pull missing), or build it: chromactl up --build DIR")
    info = engine.image(image)
    if info is None:
        raise NoSuchImage(f"image {image} is still not present after {'building' if build else 'pulling'} it")
    return info


def _apply_plan(engine: Engine, project: Project, image: ImageInfo, gateway_image: ImageInfo | None,
                reporter: Reporter, tls: TlsMaterial | None,
                prober: Prober) -> tuple[ContainerSpec, Action, ContainerSpec | None, Action | None]:
    """Bring the containers to their specs: (Chroma's spec, what was done to it, the
    gateway's spec, what was done to it)."""
    root, settings = project.root, project.settings
    path = resolve_data_path(engine, project, settings.image, image, settings.data_path)
    volume = config_volume_name(settings)
    if gateway_image is None:
        spec = plan_container(project, image, tls=tls, data_path=path)
        _remove_stale_gateway(engine, root, settings, reporter)
        files = native_config_files(project, tls)
        if files:
            deliver(engine, str(root), volume, settings.image, files)  # read by Chroma at its (re)start
        _prove_on_loopback_first(engine, project, spec, reporter, tls, prober)
        action = _apply(engine, spec, reporter)
        for name in (network_name(settings), internal_network_name(settings)):  # left from a gateway, if any
            engine.remove_network(name)
        return spec, action, None, None

    engine.ensure_network(network_name(settings), str(root))
    subnet = ensure_internal_network(engine, settings, root)
    gateway = plan_gateway(project, gateway_user(), gateway_image.id, tls=tls, subnet=subnet)
    owned_container(engine, root, gateway.spec.name)
    changed = deliver(engine, str(root), volume, settings.gateway_image, gateway.files)
    spec = plan_container(project, image, subnet=subnet, data_path=path)
    action = _apply(engine, spec, reporter)  # each stands alone: the order does not matter
    gateway_action = _apply(engine, gateway.spec, reporter)
    if gateway_action is Action.UNCHANGED and \
            not prober.port_open(probe_host(gateway.spec.host, engine.address), gateway.spec.port):
        # Both run but the published port is dead (Docker's userland proxy can die under
        # a flood of connections): restarting the gateway publishes it again.
        reporter.step(f"port {gateway.spec.port} does not answer: restarting {gateway.spec.name}")
        engine.restart(gateway.spec.name)
        gateway_action = Action.RESTARTED
    if gateway_action is Action.UNCHANGED and changed:
        # New credentials or certificate: no restart, but a check first (see CHECK_COMMAND).
        problem = engine.exec(gateway.spec.name, list(GATEWAY_CHECK))
        if problem is not None:
            raise ChromactlError(f"{gateway.spec.name} refuses its new configuration, so it keeps serving the old: "
                                 f"{problem}", hint="see `chromactl logs --service gateway`")
        reporter.step(f"reloading {gateway.spec.name}")
        problem = engine.exec(gateway.spec.name, list(GATEWAY_RELOAD))
        if problem is not None:
            raise ChromactlError(f"{gateway.spec.name} did not finish its reload: {problem}",
                                 hint="see `chromactl logs --service gateway`; `chromactl up` restarts what is needed",
                                 exit_code=EXIT_NOT_HEALTHY)
        gateway_action = Action.RELOADED
    return spec, action, gateway.spec, gateway_action


def resolve_data_path(engine: Engine, project: Project, reference: str, image: ImageInfo,
                      explicit: str | None = None) -> str:
    """Where the image keeps its data (chromactl.images.data_path; `explicit`: the operator's
    data_path), reading the configuration file the image's command names when that is what
    tells; refused when nothing tells."""
    found = data_path(reference, image, explicit)
    if found.path is not None:
        return found.path
    if found.config_file is not None:
        text = engine.image_file(reference, found.config_file)
        path = persist_path_of(text.decode(errors="replace"), image.working_dir) if text else None
        if path is not None:
            return path
    raise unknown_data_path(reference, found.source)


def _check_data_lands_in_volume(engine: Engine, spec: ContainerSpec) -> None:
    """After a start on a volume: Chroma's database must be in the volume, or every write
    would be lost at the next recreate. Found elsewhere, Chroma is stopped."""
    try:
        found = holds_file(engine.archive_out(spec.name, f"{spec.data_path}/chroma.sqlite3"))
    except ChromactlError:
        found = False
    if not found:
        engine.stop(spec.name)
        raise ChromactlError(f"{spec.name} keeps no chroma.sqlite3 under {spec.data_path}, where volume {spec.volume} "
                             "is mounted: its data would be lost at the next recreate; it is stopped",
                             hint="set data_path in chromactl.yaml to where this image keeps its data",
                             exit_code=EXIT_NOT_HEALTHY)


def _prove_on_loopback_first(engine: Engine, project: Project, spec: ContainerSpec, reporter: Reporter,
                             tls: TlsMaterial | None, prober: Prober) -> None:
    """Natively, a new or changed server is published beyond loopback only once it proved
    on loopback that it refuses strangers and holds users to their roles: an image that runs
    open (whatever its tag says) never serves anyone but this machine, not even for seconds."""
    existing = engine.container(spec.name)
    if not project.settings.auth_enabled or is_loopback(spec.host) or \
            (existing is not None and existing.labels.get(LABEL_CONFIG) == spec.config_hash):
        return
    trial = replace(spec, host="127.0.0.1", labels={**spec.labels, LABEL_CONFIG: spec.config_hash + "-loopback"})
    reporter.step(f"proving {spec.name} on 127.0.0.1 before publishing it on {spec.host}")
    _apply(engine, trial, reporter)
    _verify(engine, project, trial, Action.CREATED, 60, None, None, tls, prober)
    engine.remove(trial.name)


def ensure_internal_network(engine: Engine, settings, root: Path) -> str:
    """The project's internal network (made when missing, on a subnet the engine itself
    picks from its address pools), and its subnet."""
    name = internal_network_name(settings)
    found = engine.network(name)
    if found is None:
        engine.ensure_network(name, str(root), internal=True, subnet=engine.free_subnet())
        found = engine.network(name)
    if found is None or found.subnet is None:
        raise ChromactlError(f"network {name} has no IPv4 subnet", hint="remove it (`chromactl down`) and run up again")
    return found.subnet


def _remove_stale_gateway(engine: Engine, root: Path, settings, reporter: Reporter) -> None:
    """A gateway left from before `init --force --gateway none` would hold the port."""
    stale = engine.container(gateway_name(settings))
    if stale is not None and stale.labels.get(LABEL_PROJECT) == str(root):
        reporter.step(f"removing {stale.name}: this project no longer has a gateway (its audit trail archived)")
        remove_gateway(engine, root, stale)


def _apply(engine: Engine, spec: ContainerSpec, reporter: Reporter) -> Action:
    """Bring one container to its spec: create, recreate (a changed configuration; the data
    volume is kept), start, or leave it be."""
    existing = engine.container(spec.name)
    if existing is None:
        reporter.step(f"creating {spec.name}")
        engine.create_and_start(spec)
        return Action.CREATED
    if existing.labels.get(LABEL_CONFIG) != spec.config_hash:
        kept = f" (volume {spec.volume} is kept)" if spec.volume else ""
        reporter.step(f"configuration changed: recreating {spec.name}{kept}")
        remove_gateway(engine, Path(spec.labels[LABEL_PROJECT]), existing)  # a gateway's audit trail archived first
        engine.create_and_start(spec)
        return Action.RECREATED
    if existing.state != "running":
        reporter.step(f"starting {spec.name}")
        engine.start(spec.name, spec.host, spec.port if spec.publish else None)
        return Action.STARTED
    return Action.UNCHANGED


def last_logs(engine: Engine, name: str) -> str:
    try:
        return b"".join(engine.logs(name, tail=LOG_LINES_ON_FAILURE)).decode(errors="replace").rstrip()
    except ChromactlError:
        return ""


def _verify(engine: Engine, project: Project, spec: ContainerSpec, action: Action, timeout: float,
            gateway: ContainerSpec | None, gateway_action: Action | None, tls: TlsMaterial | None,
            prober: Prober) -> Deployed:
    """Prove the server works: it answers (over TLS, trusted through the project's CA), and
    with auth refuses strangers and accepts users."""
    url = endpoint(spec.host, spec.port, tls, engine.address)
    watched = [spec] + ([gateway] if gateway else [])
    beat = _wait_until_up(engine, url, spec, watched, timeout, prober)
    version = prober.server_version(url, beat.api)
    if gateway is not None:
        _check_behind_gateway(engine, spec, gateway, prober)
    auth = _prove_auth(engine, project, url, beat.api, spec, watched, prober)
    if action in (Action.CREATED, Action.RECREATED) or held_volume(project.root) != spec.volume:
        _check_data_lands_in_volume(engine, spec)
    record_volume(project.root, spec.volume)
    container = engine.container(spec.name)
    return Deployed(project, spec, action, url.url, tls, gateway, gateway_action,
                    container.id if container else None, version, beat.latency_ms, auth)


def _wait_until_up(engine: Engine, url: Endpoint, spec: ContainerSpec, watched: list[ContainerSpec],
                   timeout: float, prober: Prober) -> Heartbeat:
    """The first heartbeat. A container that exits or restarts while starting is stopped
    (no crash loop); anything else that keeps the heartbeat away (a slow server, one under
    a flood, a certificate that does not verify) is reported with exit 4 and the containers
    left as they are: only what proves a server unsafe takes it down (_prove_auth,
    _check_behind_gateway), never a proof that ran out of time."""
    restarts = {}
    for watched_spec in watched:
        info = engine.container(watched_spec.name)
        restarts[watched_spec.name] = info.restart_count if info else 0

    def stopped_container() -> ContainerSpec | None:
        for watched_spec in watched:
            info = engine.container(watched_spec.name)
            if info is None or info.state != "running" or info.restart_count != restarts[watched_spec.name]:
                return watched_spec
        return None

    beat = prober.wait_for_heartbeat(url, timeout, lambda: stopped_container() is None)
    if beat is not None and beat.ok:
        return beat
    if beat is not None and beat.tls_error:
        raise ChromactlError(f"{url.url} presents a certificate that does not verify with {url.cafile}: "
                             f"{beat.tls_error}; the containers keep running", exit_code=EXIT_NOT_HEALTHY,
                             hint="check tls_cert and tls_ca (tls files), or `chromactl tls renew`")
    failed = stopped_container()
    if failed is not None:
        info = engine.container(failed.name)
        logs = last_logs(engine, failed.name)
        engine.stop(failed.name)
        service = "" if failed is spec else " --service gateway"
        code = f" (exit code {info.exit_code})" if info is not None and info.exit_code else ""
        raise ChromactlError(f"{failed.name} exited while starting{code}; it is stopped, the data volume kept",
                             hint=f"see `chromactl logs{service}`", details=logs, exit_code=EXIT_NOT_HEALTHY)
    raise ChromactlError(f"no heartbeat from {url.url} within {timeout:g} s: the deployment is degraded; its "
                         "containers keep running (a slow server is not taken down)",
                         hint="see `chromactl status` and `chromactl logs`; run `chromactl up` again, or allow more "
                              "time with --timeout", details=last_logs(engine, spec.name), exit_code=EXIT_NOT_HEALTHY)


def _check_behind_gateway(engine: Engine, spec: ContainerSpec, gateway: ContainerSpec, prober: Prober) -> None:
    """Behind a gateway, Chroma must be reachable no other way: it publishes nothing, is on
    the internal network alone, and that network is internal (no way out), has no address
    on the host's side (no way in from the host) and holds nothing but Chroma and the
    gateway. Found otherwise, Chroma is removed."""
    internal = spec.networks[0].network
    behind, network = engine.container(spec.name), engine.network(internal)
    problem = None
    if behind is not None and (behind.published is not None or set(behind.networks) != {internal}):
        problem = "has a port of its own or is on another network"
    elif network is None or not network.internal or network.host_address:
        problem = f"is on network {internal}, which is not internal or has an address on the host"
    elif set(network.containers) - {spec.name, gateway.name}:
        others = ", ".join(sorted(set(network.containers) - {spec.name, gateway.name}))
        problem = f"shares network {internal} with {others}"
    if problem:
        engine.remove(spec.name)
        raise ChromactlError(f"{spec.name} {problem}, so it could be reached around the gateway; it was removed "
                             "(volume kept)", hint="`chromactl down` and `chromactl up` make the networks again",
                             exit_code=EXIT_NOT_HEALTHY)


def _prove_auth(engine: Engine, project: Project, url: Endpoint, api: str, spec: ContainerSpec,
                watched: list[ContainerSpec], prober: Prober) -> AuthProbe | None:
    """Strangers refused, the probe user accepted; a server found open is removed at once."""
    settings = project.settings
    if not settings.auth_enabled:
        return None
    auth = prober.probe_auth(url, api, settings, project.probe_secret)

    def unanswered(probe: AuthProbe) -> bool:
        return probe.anonymous_status is None or (project.probe_secret is not None and probe.credential_status is None)

    for _ in range(PROBE_RETRIES):  # no answer proves nothing either way: ask again
        if not unanswered(auth):
            break
        time.sleep(PROBE_PAUSE_S)
        auth = prober.probe_auth(url, api, settings, project.probe_secret)
    if unanswered(auth):
        raise ChromactlError(
            f"{url.url} answered its heartbeat but not chromactl's auth checks: auth is not proven; the containers "
            "keep running", hint="see `chromactl logs`; run `chromactl up` again", exit_code=EXIT_NOT_HEALTHY)
    if not auth.enforced:
        _remove_at_once(engine, project.root, watched)
        raise ChromactlError(
            f"{url.url} did not refuse a request without credentials (HTTP {auth.anonymous_status}): auth is NOT enforced, so "
            f"{spec.name} was removed (volume {spec.volume} kept)",
            hint="this image ignores the auth settings: use the gateway (`chromactl init --force --gateway nginx`) "
                 "or chromadb/chroma:0.6.3", exit_code=EXIT_NOT_HEALTHY)
    if not auth.accepted:
        raise ChromactlError(
            f"{url.url} refused chromactl's probe credential (HTTP {auth.credential_status}): the server does not "
            "accept the project's credential files", hint="see `chromactl logs`", exit_code=EXIT_NOT_HEALTHY)
    if auth.roles_enforced is False:
        _remove_at_once(engine, project.root, watched)
        raise ChromactlError(
            f"{url.url} let chromactl's probe user create a collection, which its role does not allow "
            f"(HTTP {auth.write_status}): RBAC is NOT enforced, so {spec.name} was removed (volume kept)",
            hint=f"check the auth variables in {ENV_FILE}, or `chromactl init --force` to rewrite it",
            exit_code=EXIT_NOT_HEALTHY)
    return auth


def _remove_at_once(engine: Engine, root: Path, watched: list[ContainerSpec]) -> None:
    """Take down a server found unsafe: the gateway's audit trail is archived when it can
    be (it tells who reached the open server), and the removal happens whatever happens."""
    for watched_spec in watched:
        found = engine.container(watched_spec.name)
        if found is not None:
            remove_gateway(engine, root, found, archive_required=False)


def put_back(redeploy: Callable[[], object], failure: BaseException, failed: str, back: str, hint: str) -> None:
    """After a failed switch the previous state is on disk again: start it, then raise
    "`failed` (why); `back`". Ctrl-C stays Ctrl-C (the caller re-raises it once this returns);
    a failure to start the previous state is said too, never hidden behind the first."""
    why = failure.message if isinstance(failure, ChromactlError) else type(failure).__name__
    try:
        redeploy()
    except ChromactlError as second:
        raise ChromactlError(f"{failed} ({why}); starting the previous state failed too: {second.message}",
                             hint=hint, details=getattr(failure, "details", None)) from None
    if isinstance(failure, KeyboardInterrupt):
        return  # put back as before; the interrupt goes on to the CLI (exit 130)
    raise ChromactlError(f"{failed} ({why}); {back}", hint=hint, details=getattr(failure, "details", None)) from None


def apply_change(project: Project, connect: Callable[[], Engine], reporter: Reporter,
                 prober: Prober | None = None) -> Applied:
    """Make a change of the project's files take effect on the running instance at once:
    the gateway reloads (no restart), or, natively, Chroma is recreated (it reads
    credentials and its certificate at start)."""
    try:
        engine = connect()
    except EngineUnavailable:
        return Applied.NO_ENGINE
    if compose_containers(engine, project.root):
        return Applied.COMPOSE
    chroma = owned_container(engine, project.root, container_name(project.settings))
    if chroma is None or chroma.state != "running":
        return Applied.NOT_RUNNING
    result = deploy(project, engine, reporter, pull="never", prober=prober)
    if result.gateway_action is Action.RELOADED:
        return Applied.RELOADED
    if result.action is Action.RECREATED:
        return Applied.RECREATED
    return Applied.IN_EFFECT
