"""`chromactl up`: pull or build the image, run the container, and prove it works:
the heartbeat answers, a request without credentials is refused, the probe user's is
accepted. An open server is never left behind when auth is configured."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

from chromactl.commands.init import InitResult, init_project
from chromactl.errors import EXIT_NOT_HEALTHY, ChromactlError
from chromactl.plan import check_image_enforces_auth, check_probe, env_file_path, plan_container
from chromactl.probe import AuthProbe, probe_auth, server_version, wait_for_heartbeat
from chromactl.project import Project, is_project, load_project
from chromactl.spec import LABEL_CONFIG, LABEL_PROJECT, ContainerSpec, docker_run_command, url_for

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
        return UpResult(project, "dry-run", spec, url_for(settings.host, settings.port),
                        command=docker_run_command(spec, str(env_file_path(project))), init=init_result)

    from chromactl.engine import Engine  # only commands that talk to Docker import the SDK

    engine = Engine.connect()
    image = _ensure_image(engine, settings.image, pull, build, reporter)
    spec = plan_container(project, image["Id"], (image.get("Config") or {}).get("WorkingDir"))

    existing = engine.container(spec.name)
    if existing is not None and existing.labels.get(LABEL_PROJECT) != str(root):
        owner = existing.labels.get(LABEL_PROJECT, "something other than chromactl")
        raise ChromactlError(f"a container named {spec.name} already exists and belongs to {owner}",
                             hint="give this project another name: chromactl init --force --name NAME")
    if existing is None:
        reporter.step(f"creating {spec.name}")
        engine.create_and_start(spec)
        action = "created"
    elif existing.labels.get(LABEL_CONFIG) != spec.config_hash:
        reporter.step(f"configuration changed: recreating {spec.name} (volume {spec.volume} is kept)")
        engine.remove(spec.name)
        engine.create_and_start(spec)
        action = "recreated"
    elif existing.state != "running":
        reporter.step(f"starting {spec.name}")
        engine.start(spec.name, spec.host, spec.port)
        action = "started"
    else:
        action = "unchanged"

    return _verify(engine, project, spec, action, timeout, init_result)


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
            init_result: InitResult | None) -> UpResult:
    settings = project.settings
    url = url_for(spec.host, spec.port)
    first = engine.container(spec.name)
    restarts = first.restart_count if first else 0

    def still_running() -> bool:
        info = engine.container(spec.name)
        return info is not None and info.state == "running" and info.restart_count == restarts

    beat = wait_for_heartbeat(url, timeout, still_running)
    if beat is None or not beat.ok:
        logs = _last_logs(engine, spec.name)
        engine.stop(spec.name)  # no crash loop, and nothing half-started left serving
        if beat is None:
            raise ChromactlError(f"{spec.name} exited while starting; it is stopped, its volume kept",
                                 hint="see `chromactl logs`", details=logs, exit_code=EXIT_NOT_HEALTHY)
        raise ChromactlError(f"no heartbeat from {url} within {timeout:g} s; {spec.name} is stopped, its volume kept",
                             hint="see `chromactl logs`, or allow more time with --timeout", details=logs,
                             exit_code=EXIT_NOT_HEALTHY)

    version = server_version(url, beat.api)
    auth = None
    if settings.auth_enabled:
        auth = probe_auth(url, beat.api, settings, project.probe_secret)
        if not auth.enforced:
            engine.remove(spec.name)
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
                    heartbeat_ms=beat.latency_ms, auth=auth, init=init_result)
