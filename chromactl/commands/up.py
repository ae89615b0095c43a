"""`chromactl up`: pull or build the images, run the containers, and prove them: the
heartbeat answers, a request without credentials is refused, the probe user's is
accepted. An open server is never left behind when auth is configured. In a folder
without a project, `init` runs first."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from chromactl.certs import ensure_tls
from chromactl.deploy import Deployed, Reporter, deploy
from chromactl.engine_api import Engine
from chromactl.gateway_files import gateway_user
from chromactl.plan import check_image_enforces_auth, check_probe, check_scopes, plan_container, plan_gateway
from chromactl.project import Project, is_project, load_project, no_project, project_lock
from chromactl.recovery import recover
from chromactl.scaffold import InitResult, init_project
from chromactl.spec import docker_run_command, internal_network_name, network_name
from chromactl.envfile import ENV_FILE


@dataclass(frozen=True)
class UpResult:
    project: Project
    deployed: Deployed | None  # None for --dry-run
    init: InitResult | None = None  # the project created first, with its admin secret
    commands: tuple[str, ...] = ()  # --dry-run: the equivalent docker commands


def up(root: Path, connect: Callable[[], Engine], reporter: Reporter, *, pull: str = "missing",
       build: str | None = None, timeout: float = 60, dry_run: bool = False, start_empty: bool = False,
       init_settings: dict | None = None, on_init: Callable[[InitResult], None] | None = None) -> UpResult:
    init_result = None
    if not is_project(root):
        if dry_run:
            raise no_project(root, hint="`chromactl up` without --dry-run creates one")
        init_result = init_project(root, init_settings or {})
        if on_init is not None:
            on_init(init_result)  # the admin secret is shown now, whatever happens next
    project = load_project(root)
    if dry_run:
        return UpResult(project, None, init_result, _dry_run(project))
    engine = connect()
    with project_lock(root):  # one up (or backup, restore, creds change...) at a time per project
        if recover(root, engine, reporter, timeout=timeout) is not None:
            project = load_project(root)
        deployed = deploy(project, engine, reporter, pull=pull, build=build, timeout=timeout, start_empty=start_empty)
    return UpResult(project, deployed, init_result)


def _dry_run(project: Project) -> tuple[str, ...]:
    check_image_enforces_auth(project)
    check_scopes(project)
    check_probe(project)
    tls = ensure_tls(project)
    spec = plan_container(project, None, tls=tls)
    commands = [docker_run_command(spec, str(project.root / ENV_FILE))]
    if project.settings.uses_gateway:
        settings, subnet = project.settings, "SUBNET"  # chosen by `up` among the free ones
        gateway = plan_gateway(project, gateway_user(), "", tls=tls)  # refuses a route table that does not cover the roles
        commands[:0] = [f"docker network create {network_name(settings)}",
                        f"docker network create --internal --opt com.docker.network.bridge.inhibit_ipv4=true "
                        f"--subnet {subnet} {internal_network_name(settings)}",
                        docker_run_command(gateway.spec, None)]
    return tuple(commands)
