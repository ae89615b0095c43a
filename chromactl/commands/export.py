"""`chromactl export compose|kubernetes`: the same deployment for an orchestrator."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from chromactl import fsio
from chromactl.certs import SERVER_TLS_DIR, ensure_tls, issue_for
from chromactl.credentials import credential_file_names
from chromactl.engine_api import Engine, EngineUnavailable
from chromactl.errors import ChromactlError
from chromactl.gateway_files import gateway_user, write_gateway_files
from chromactl.manifests import GATEWAY_POD_PORT, render_compose, render_kubernetes
from chromactl.plan import (
    check_image_enforces_auth,
    check_scopes,
    choose_subnet,
    mounted_files,
    plan_gateway,
    read_environment,
)
from chromactl.project import PUBLIC_MODE, SECRET_MODE, Project, load_project
from chromactl.spec import LABEL_PROJECT, container_name, volume_name

# The Compose gateway's own copy of its configuration, apart from the one `up` reloads.
COMPOSE_GATEWAY_DIR = ".chromactl/compose-gateway"


def _load(root: Path) -> Project:
    project = load_project(root)
    check_image_enforces_auth(project)
    check_scopes(project)
    read_environment(project)  # a .chroma_env that contradicts the settings is refused here too
    return project


@dataclass(frozen=True)
class ComposeExport:
    text: str
    volume: str
    volume_created: bool  # made now on the engine; False: it was there, or no engine answered
    engine_reached: bool


def export_compose(root: Path, output: Path | None, connect: Callable[[], Engine]) -> ComposeExport:
    """The Compose file. When an engine answers, the internal network's subnet is chosen
    among the free ones there and the (external) data volume is created if missing."""
    project = _load(root)
    base = output.absolute().parent if output else Path.cwd()
    if output is not None:
        _check_output(output)
    try:
        engine = connect()
    except EngineUnavailable:
        engine = None
    mounted: list[str] = []
    user = gateway_user()
    tls = ensure_tls(project)
    subnet = None
    if project.settings.uses_gateway:
        subnet = engine.free_subnet() if engine is not None else choose_subnet([], f"{project.root} compose")
        write_gateway_files(plan_gateway(project, user, tls=tls, subnet=subnet), project.root / COMPOSE_GATEWAY_DIR,
                            project.root)
    else:
        mounted = list(credential_file_names(project.settings))
    volume, created = volume_name(project.settings), False
    if engine is not None and not engine.volume_exists(volume):
        engine.create_volume(volume, {LABEL_PROJECT: str(project.root)})
        created = True
    text = render_compose(project, mounted, str(base), COMPOSE_GATEWAY_DIR, user,
                          SERVER_TLS_DIR if tls else None, subnet)
    _write(output, text, PUBLIC_MODE)
    return ComposeExport(text, volume, created, engine is not None)


def export_kubernetes(root: Path, output: Path | None, namespace: str | None) -> str:
    project = _load(root)
    if output is not None:
        _check_output(output)
    sidecar = None
    tls = None
    if project.settings.uses_tls:  # the names the pod is reached by: its Service's, in every form
        service, space = container_name(project.settings), namespace or "default"
        tls = issue_for(project, ("localhost", "127.0.0.1", service, f"{service}.{space}", f"{service}.{space}.svc",
                                  f"{service}.{space}.svc.cluster.local", *project.settings.tls_san))
    if project.settings.uses_gateway:
        # In a pod the gateway reaches Chroma on localhost and listens on a port of its own.
        plan = plan_gateway(project, gateway_user(), listen=GATEWAY_POD_PORT, tls=tls)
        sidecar = {name: f.content for name, f in plan.files.items()}
    tls_files = (tls.cert.encode(), tls.key.encode(), tls.ca_path.read_bytes()) if tls else None
    text = render_kubernetes(project, read_environment(project), mounted_files(project), namespace,
                             gateway_files=sidecar, tls=tls_files)
    _write(output, text, SECRET_MODE)  # it holds the credentials
    return text


def _check_output(output: Path) -> None:
    output = output.absolute()
    if output.is_dir():
        raise ChromactlError(f"-o {output}: is a folder; give a file name")
    if not output.parent.is_dir():
        raise ChromactlError(f"-o {output}: the folder {output.parent} does not exist")


def _write(output: Path | None, text: str, mode: int) -> None:
    if output is not None:
        fsio.write_files({output.absolute(): (text, mode)})
