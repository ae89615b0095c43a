"""`chromactl up`: pull or build the image, run the container, and prove it works:
the heartbeat answers, a request without credentials is refused, the probe user's is
accepted. An open server is never left behind when auth is configured."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from chromactl.commands.init import InitResult, init_project
from chromactl.errors import EXIT_NOT_HEALTHY, ChromactlError
from chromactl.gateway import CHECK_COMMAND as GATEWAY_CHECK
from chromactl.plan import (
    GatewayPlan,
    TlsMaterial,
    endpoint,
    ensure_tls,
    trusted,
    started,
    check_image_enforces_auth,
    check_probe,
    env_file_path,
    owned_container,
    plan_container,
    plan_gateway,
)
from chromactl.probe import AuthProbe, Endpoint, Heartbeat, port_open, probe_auth, server_version, wait_for_heartbeat
from chromactl.project import Project, is_project, load_project, no_project
from chromactl.spec import (
    LABEL_CONFIG,
    CONTAINER_PORT,
    LABEL_PROJECT,
    ContainerSpec,
    container_name,
    docker_run_command,
    gateway_name,
    network_name,
    probe_host,
    url_for,
)

PULL_POLICIES = ("missing", "always", "never")
LOG_LINES_ON_FAILURE = 20


class Reporter(Protocol):
    def initialised(self, result: InitResult) -> None: ...
    def step(self, message: str) -> None: ...
    def pull_event(self, event: dict) -> None: ...
    def pull_done(self) -> None: ...
    def build_output(self, text: str) -> None: ...


@dataclass(frozen=True)
class UpResult:
    project: Project
    action: str  # created, recreated, started, restarted, unchanged, dry-run
    spec: ContainerSpec
    url: str
    command: str | None = None  # the equivalent docker run, for --dry-run
    container_id: str | None = None
    version: str | None = None
    heartbeat_ms: float | None = None
    auth: AuthProbe | None = None
    init: InitResult | None = None
    gateway: ContainerSpec | None = None
    gateway_action: str | None = None  # created, recreated, started, restarted, reloaded, unchanged
    tls: TlsMaterial | None = None  # what the server presents; None: plain HTTP

    @property
    def target(self) -> Endpoint:
        """The URL, and for https how to trust the server."""
        return trusted(self.url, self.tls)


def up(root: Path, reporter: Reporter, *, pull: str = "missing", build: str | None = None,
       timeout: float = 60, dry_run: bool = False, init_settings: dict | None = None) -> UpResult:
    if pull not in PULL_POLICIES:
        raise ChromactlError(f"unknown pull policy {pull!r}: use one of {', '.join(PULL_POLICIES)}")
    root = root.absolute()
    init_result = None
    if not is_project(root):
        if dry_run:
            raise no_project(root, hint="`chromactl up` without --dry-run creates one")
        init_result = init_project(root, init_settings or {})
        reporter.initialised(init_result)  # the admin secret is shown now, whatever happens next
    project = load_project(root)
    check_image_enforces_auth(project)
    check_probe(project)
    if dry_run:
        return _dry_run(project, init_result)

    from chromactl.engine import Engine  # only commands that talk to Docker import the SDK

    engine = Engine.connect()
    tls = ensure_tls(project)
    image, gateway = _plan(engine, project, pull, build, reporter, tls)
    spec, action, gateway_action = _apply_plan(engine, project, image, gateway, reporter, tls)
    return _verify(engine, project, spec, action, timeout, init_result, gateway.spec if gateway else None,
                   gateway_action, tls)


def _dry_run(project: Project, init_result: InitResult | None) -> UpResult:
    settings = project.settings
    tls = ensure_tls(project)
    spec = plan_container(project, image_id="", tls=tls)
    commands = [docker_run_command(spec, str(env_file_path(project)))]
    if settings.uses_gateway:
        gateway = plan_gateway(project, "", tls=tls)  # refuses a route table that does not cover the roles
        commands.insert(0, f"docker network create {network_name(settings)}")
        commands.insert(1, docker_run_command(gateway.spec, None))
    return UpResult(project, "dry-run", spec, url_for(settings.host, settings.port),
                    command="\n".join(commands), init=init_result)


def _plan(engine, project: Project, pull: str, build: str | None, reporter: Reporter,
          tls: TlsMaterial | None) -> tuple[dict, GatewayPlan | None]:
    """The images, present now, and the gateway's plan when the project has one."""
    settings = project.settings
    image = _ensure_image(engine, settings.image, pull, build, reporter)
    gateway = None
    if settings.uses_gateway:
        gateway_image = _ensure_image(engine, settings.gateway_image, pull, None, reporter)
        gateway = plan_gateway(project, gateway_image["Id"], tls=tls)
        owned_container(engine, project.root, gateway.spec.name)
    owned_container(engine, project.root, container_name(settings))
    return image, gateway


def _apply_plan(engine, project: Project, image: dict, gateway: GatewayPlan | None, reporter: Reporter,
                tls: TlsMaterial | None) -> tuple[ContainerSpec, str, str | None]:
    """Bring the containers to their specs: Chroma's spec, and what was done to Chroma and
    to the gateway. The gateway comes first: it owns the network namespace Chroma joins."""
    root, settings = project.root, project.settings
    if gateway is None:
        spec = plan_container(project, image["Id"], image.get("Config"), tls=tls)
        _remove_stale_gateway(engine, root, settings, reporter)
        action = _apply(engine, spec, reporter)
        engine.remove_network(network_name(settings))  # left from a gateway, if any
        return spec, action, None

    engine.ensure_network(network_name(settings), str(root))
    changed = gateway.write()
    gateway_action = _apply(engine, gateway.spec, reporter)
    front = engine.container(gateway.spec.name)
    if gateway_action == "unchanged" and not _port_answers(gateway.spec):
        # Both run but the published port is dead (Docker's userland proxy can die under
        # a flood of connections): restarting the gateway publishes it again.
        reporter.step(f"port {gateway.spec.port} does not answer: restarting {gateway.spec.name}")
        engine.restart(gateway.spec.name)
        front, gateway_action = engine.container(gateway.spec.name), "restarted"
    spec = plan_container(project, image["Id"], image.get("Config"), namespace_of=front.id)
    action = _apply(engine, spec, reporter)
    chroma = engine.container(spec.name)
    if action == "unchanged" and chroma is not None and started(chroma) < started(front):
        # The gateway started again after Chroma joined it, so Chroma holds a namespace
        # that is gone: start it again in the current one.
        reporter.step(f"restarting {spec.name}: its gateway restarted after it")
        engine.restart(spec.name)
        action = "restarted"
    if gateway_action == "unchanged" and changed:
        # New credentials or certificate: no restart, but a check first (see CHECK_COMMAND).
        problem = engine.exec(gateway.spec.name, list(GATEWAY_CHECK))
        if problem is not None:
            raise ChromactlError(f"{gateway.spec.name} refuses its new configuration, so it keeps serving the old: "
                                 f"{problem}", hint="see `chromactl logs --service gateway`")
        reporter.step(f"reloading {gateway.spec.name}")
        engine.signal(gateway.spec.name, "SIGHUP")
        gateway_action = "reloaded"
    return spec, action, gateway_action


def _port_answers(spec: ContainerSpec) -> bool:
    return port_open(probe_host(spec.host), spec.port)


def _remove_stale_gateway(engine, root: Path, settings, reporter: Reporter) -> None:
    """A gateway left from before `init --force --gateway none` would hold the port."""
    stale = engine.container(gateway_name(settings))
    if stale is not None and stale.labels.get(LABEL_PROJECT) == str(root):
        reporter.step(f"removing {stale.name}: this project no longer has a gateway")
        engine.remove(stale.name)


def _apply(engine, spec: ContainerSpec, reporter: Reporter) -> str:
    """Bring one container to its spec: create, recreate (a changed configuration; the data
    volume is kept), start, or leave it be. Returns what was done."""
    existing = engine.container(spec.name)
    if existing is None:
        reporter.step(f"creating {spec.name}")
        engine.create_and_start(spec)
        return "created"
    if existing.labels.get(LABEL_CONFIG) != spec.config_hash:
        kept = f" (volume {spec.volume} is kept)" if spec.volume else ""
        reporter.step(f"configuration changed: recreating {spec.name}{kept}")
        engine.remove(spec.name)
        engine.create_and_start(spec)
        return "recreated"
    if existing.state != "running":
        reporter.step(f"starting {spec.name}")
        engine.start(spec.name, spec.host, spec.port if spec.publish else None)
        return "started"
    return "unchanged"


def _ensure_image(engine, image: str, pull: str, build: str | None, reporter: Reporter) -> dict:
    if build is not None:
        if "://" not in build and not build.startswith("git@") and not Path(build).is_dir():
            raise ChromactlError(f"--build {build}: no such folder (give a folder with a Dockerfile, or a git URL)")
        reporter.step(f"building {image} from {build}")
        engine.build(build, image, reporter.build_output)
    else:
        present = engine.image_attrs(image)
        if pull == "always" or (pull == "missing" and present is None):
            reporter.step(f"pulling {image}")
            engine.pull(image, reporter.pull_event)
            reporter.pull_done()
        elif present is None:
            raise ChromactlError(f"image {image} is not present and --pull is never",
                                 hint="pull it (--pull missing), or build it: chromactl up --build DIR")
    attrs = engine.image_attrs(image)
    if attrs is None:
        raise ChromactlError(f"image {image} is still not present after {'building' if build else 'pulling'} it")
    return attrs


def _last_logs(engine, name: str) -> str:
    try:
        return b"".join(engine.logs(name, tail=LOG_LINES_ON_FAILURE)).decode(errors="replace").rstrip()
    except ChromactlError:
        return ""


def _verify(engine, project: Project, spec: ContainerSpec, action: str, timeout: float,
            init_result: InitResult | None, gateway: ContainerSpec | None = None,
            gateway_action: str | None = None, tls: TlsMaterial | None = None) -> UpResult:
    """Prove the server works: it answers (over TLS, trusted through the project's CA), and
    with auth refuses strangers and accepts users."""
    url = endpoint(spec.host, spec.port, tls)
    watched = [spec] + ([gateway] if gateway else [])
    beat = _wait_until_up(engine, url, spec, watched, timeout)
    version = server_version(url, beat.api)
    if gateway is not None:
        _check_behind_gateway(engine, spec, gateway)
    auth = _prove_auth(engine, project, url, beat.api, spec, watched, version)
    container = engine.container(spec.name)
    return UpResult(project, action, spec, url.url, container_id=container.id if container else None,
                    version=version, heartbeat_ms=beat.latency_ms, auth=auth, init=init_result, gateway=gateway,
                    gateway_action=gateway_action, tls=tls)


def _wait_until_up(engine, url: Endpoint, spec: ContainerSpec, watched: list[ContainerSpec],
                   timeout: float) -> Heartbeat:
    """The first heartbeat; if a container stops or restarts first, or time runs out, every
    watched container is stopped (no crash loop, nothing half-started left serving)."""
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

    beat = wait_for_heartbeat(url, timeout, lambda: stopped_container() is None)
    if beat is not None and beat.ok:
        return beat
    if beat is not None and beat.tls_error:
        for watched_spec in watched:
            engine.stop(watched_spec.name)
        raise ChromactlError(f"{url.url} presents a certificate that does not verify with {url.cafile}: "
                             f"{beat.tls_error}; the containers are stopped", exit_code=EXIT_NOT_HEALTHY,
                             hint="check tls_cert and tls_ca (tls files), or `chromactl tls renew`")
    failed = stopped_container() or spec
    info = engine.container(failed.name)
    logs = _last_logs(engine, failed.name)
    for watched_spec in watched:
        engine.stop(watched_spec.name)
    if beat is None:
        service = "" if failed is spec else " --service gateway"
        code = f" (exit code {info.exit_code})" if info is not None and info.exit_code else ""
        raise ChromactlError(f"{failed.name} exited while starting{code}; it is stopped, the data volume kept",
                             hint=f"see `chromactl logs{service}`", details=logs, exit_code=EXIT_NOT_HEALTHY)
    raise ChromactlError(f"no heartbeat from {url.url} within {timeout:g} s; {spec.name} is stopped, its volume kept",
                         hint="see `chromactl logs`, or allow more time with --timeout", details=logs,
                         exit_code=EXIT_NOT_HEALTHY)


def _check_behind_gateway(engine, spec: ContainerSpec, gateway: ContainerSpec) -> None:
    """Behind a gateway, Chroma must be reachable no other way: it publishes nothing, has
    no address of its own, and its port does not answer on the gateway's addresses (it
    listens on the shared namespace's loopback only). Found otherwise, it is removed."""
    behind, front = engine.container(spec.name), engine.container(gateway.name)
    problem = None
    if behind is not None and (behind.published is not None or behind.addresses):
        problem = "has a port or an address of its own"
    elif front is not None and any(port_open(address, CONTAINER_PORT) for address in front.addresses):
        problem = f"answers on port {CONTAINER_PORT} of the gateway's address, not only on its loopback"
    if problem:
        engine.remove(spec.name)
        raise ChromactlError(f"{spec.name} {problem}, so it could be reached around the gateway; it was removed "
                             "(volume kept)", hint="the image must honour CHROMA_LISTEN_ADDRESS (1.x) or "
                             "CHROMA_HOST_ADDR (0.x), or take --host in its command", exit_code=EXIT_NOT_HEALTHY)


def _prove_auth(engine, project: Project, url: Endpoint, api: str, spec: ContainerSpec, watched: list[ContainerSpec],
                version: str | None) -> AuthProbe | None:
    """Strangers refused, the probe user accepted; a server found open is removed at once."""
    settings = project.settings
    if not settings.auth_enabled:
        return None
    auth = probe_auth(url, api, settings, project.probe_secret)
    if not auth.enforced:
        for watched_spec in watched:
            engine.remove(watched_spec.name)
        seen = f"HTTP {auth.anonymous_status}" if auth.anonymous_status else "no answer"
        raise ChromactlError(
            f"{url.url} did not refuse a request without credentials ({seen}): auth is NOT enforced, so "
            f"{spec.name} was removed (volume {spec.volume} kept). Chroma {version or '1.x'} ignores auth settings",
            hint="use chromadb/chroma:0.6.3, the last Chroma that enforces them", exit_code=EXIT_NOT_HEALTHY)
    if not auth.accepted:
        raise ChromactlError(
            f"{url.url} refused chromactl's probe credential (HTTP {auth.credential_status}): the server does not "
            "accept the project's credential files", hint="see `chromactl logs`", exit_code=EXIT_NOT_HEALTHY)
    return auth
