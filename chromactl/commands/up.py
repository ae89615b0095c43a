"""`chromactl up`: pull or build the image, run the container, and prove it works:
the heartbeat answers, a request without credentials is refused, the probe user's is
accepted. An open server is never left behind when auth is configured."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from chromactl.commands.init import InitResult, init_project
from chromactl.errors import EXIT_NOT_HEALTHY, ChromactlError
from chromactl import fsio
from chromactl.plan import (
    check_image_enforces_auth,
    ensure_gateway_dir,
    check_probe,
    env_file_path,
    gateway_files,
    gateway_files_changed,
    plan_container,
    plan_gateway,
)
from chromactl.probe import AuthProbe, probe_auth, server_version, wait_for_heartbeat
from chromactl.project import Project, is_project, load_project
from chromactl.spec import (
    LABEL_CONFIG,
    LABEL_PROJECT,
    ContainerSpec,
    docker_run_command,
    gateway_name,
    network_name,
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
    action: str  # created, recreated, started, unchanged, dry-run
    spec: ContainerSpec
    url: str
    command: str | None = None  # the equivalent docker run, for --dry-run
    container: str | None = None  # id
    version: str | None = None
    heartbeat_ms: float | None = None
    auth: AuthProbe | None = None
    init: InitResult | None = None
    gateway: ContainerSpec | None = None
    gateway_action: str | None = None  # created, recreated, started, reloaded, unchanged


def up(root: Path, reporter: Reporter, *, pull: str = "missing", build: str | None = None,
       timeout: float = 60, dry_run: bool = False, init_settings: dict | None = None) -> UpResult:
    root = root.absolute()
    init_result = None
    if not is_project(root):
        if dry_run:
            raise ChromactlError(f"no chromactl project in {root}", hint="`chromactl up` without --dry-run creates one")
        init_result = init_project(root, init_settings or {})
        reporter.initialised(init_result)  # the admin secret is shown now, whatever happens next
    project = load_project(root)
    settings = project.settings
    check_image_enforces_auth(project)
    check_probe(project)

    if dry_run:
        spec = plan_container(project, image_id="", working_dir=None)
        commands = [docker_run_command(spec, str(env_file_path(project)))]
        if settings.uses_gateway:
            gateway_files(project)  # refuses a route table that does not cover the roles
            commands.insert(0, f"docker network create {network_name(settings)}")
            commands.append(docker_run_command(plan_gateway(project, ""), None))
        return UpResult(project, "dry-run", spec, url_for(settings.host, settings.port),
                        command="\n".join(commands), init=init_result)

    from chromactl.engine import Engine  # only commands that talk to Docker import the SDK

    engine = Engine.connect()
    image = _ensure_image(engine, settings.image, pull, build, reporter)
    spec = plan_container(project, image["Id"], (image.get("Config") or {}).get("WorkingDir"))
    gateway = files = None
    if settings.uses_gateway:
        files = gateway_files(project)
        gateway_image = _ensure_image(engine, settings.gateway_image, pull, None, reporter)
        gateway = plan_gateway(project, gateway_image["Id"])
        _check_owner(engine, root, gateway.name)
    _check_owner(engine, root, spec.name)

    if gateway is not None:
        engine.ensure_network(spec.network, str(root))
    else:
        _remove_stale_gateway(engine, root, settings, reporter)
    action = _apply(engine, spec, reporter)
    if gateway is None:
        engine.remove_network(network_name(settings))  # left from a gateway, if any
    gateway_action = None
    if gateway is not None:
        changed = gateway_files_changed(files)
        if changed:
            ensure_gateway_dir(root)
            fsio.write_files(files)
        try:
            gateway_action = _apply(engine, gateway, reporter)
        except ChromactlError as exc:
            engine.stop(spec.name)  # no Chroma left running without the gateway in front
            raise ChromactlError(f"the gateway failed to start: {exc.message}; {spec.name} is stopped",
                                 hint="see `chromactl logs --service gateway`", details=exc.details,
                                 exit_code=EXIT_NOT_HEALTHY) from None
        if gateway_action == "unchanged" and (changed or action in ("created", "recreated")):
            # New credentials, or a new Chroma container to resolve: reload, no restart.
            reporter.step(f"reloading {gateway.name}")
            engine.signal(gateway.name, "SIGHUP")
            gateway_action = "reloaded"

    return _verify(engine, project, spec, action, timeout, init_result, gateway, gateway_action)


def _remove_stale_gateway(engine, root: Path, settings, reporter: Reporter) -> None:
    """A gateway left from before `init --force --gateway none` would hold the port."""
    stale = engine.container(gateway_name(settings))
    if stale is not None and stale.labels.get(LABEL_PROJECT) == str(root):
        reporter.step(f"removing {stale.name}: this project no longer has a gateway")
        engine.remove(stale.name)


def _check_owner(engine, root: Path, name: str) -> None:
    existing = engine.container(name)
    if existing is not None and existing.labels.get(LABEL_PROJECT) != str(root):
        owner = existing.labels.get(LABEL_PROJECT, "something other than chromactl")
        raise ChromactlError(f"a container named {name} already exists and belongs to {owner}",
                             hint="give this project another name: chromactl init --force --name NAME")


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
            gateway_action: str | None = None) -> UpResult:
    settings = project.settings
    url = url_for(spec.host, spec.port)
    watched = [spec] + ([gateway] if gateway else [])
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
    if beat is None or not beat.ok:
        failed = stopped_container() or spec
        logs = _last_logs(engine, failed.name)
        for watched_spec in watched:
            engine.stop(watched_spec.name)  # no crash loop, and nothing half-started left serving
        if beat is None:
            service = "" if failed is spec else " --service gateway"
            raise ChromactlError(f"{failed.name} exited while starting; it is stopped, the data volume kept",
                                 hint=f"see `chromactl logs{service}`", details=logs, exit_code=EXIT_NOT_HEALTHY)
        raise ChromactlError(f"no heartbeat from {url} within {timeout:g} s; {spec.name} is stopped, its volume kept",
                             hint="see `chromactl logs`, or allow more time with --timeout", details=logs,
                             exit_code=EXIT_NOT_HEALTHY)

    version = server_version(url, beat.api)
    if gateway is not None:
        behind = engine.container(spec.name)
        if behind is not None and behind.published is not None:
            engine.remove(spec.name)
            raise ChromactlError(f"{spec.name} publishes port {behind.published[1]} on the host although a gateway "
                                 "stands in front of it; it was removed (volume kept)", exit_code=EXIT_NOT_HEALTHY)
    auth = None
    if settings.auth_enabled:
        auth = probe_auth(url, beat.api, settings, project.probe_secret)
        if not auth.enforced:
            for watched_spec in watched:
                engine.remove(watched_spec.name)
            seen = f"HTTP {auth.anonymous_status}" if auth.anonymous_status else "no answer"
            raise ChromactlError(
                f"{url} did not refuse a request without credentials ({seen}): auth is NOT enforced, so "
                f"{spec.name} was removed (volume {spec.volume} kept). Chroma {version or '1.x'} ignores auth settings",
                hint="use chromadb/chroma:0.6.3, the last Chroma that enforces them", exit_code=EXIT_NOT_HEALTHY)
        if not auth.accepted:
            raise ChromactlError(
                f"{url} refused chromactl's probe credential (HTTP {auth.credential_status}): the server does not "
                "accept the project's credential files", hint="see `chromactl logs`", exit_code=EXIT_NOT_HEALTHY)
    container = engine.container(spec.name)
    return UpResult(project, action, spec, url, container=container.id if container else None, version=version,
                    heartbeat_ms=beat.latency_ms, auth=auth, init=init_result, gateway=gateway,
                    gateway_action=gateway_action)
