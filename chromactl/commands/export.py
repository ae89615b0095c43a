"""`chromactl export compose|kubernetes`: the same deployment for an orchestrator."""

from __future__ import annotations

from pathlib import Path

from chromactl import fsio
from chromactl.certs import SERVER_TLS_DIR, ensure_tls
from chromactl.credentials import credential_file_names
from chromactl.errors import ChromactlError
from chromactl.gateway_files import gateway_user, write_gateway_files
from chromactl.manifests import GATEWAY_POD_PORT, render_compose, render_kubernetes
from chromactl.plan import check_image_enforces_auth, mounted_files, plan_gateway, read_environment
from chromactl.project import PUBLIC_MODE, SECRET_MODE, Project, load_project

# The Compose gateway's own copy of its configuration, apart from the one `up` reloads.
COMPOSE_GATEWAY_DIR = ".chromactl/compose-gateway"


def _load(root: Path) -> Project:
    project = load_project(root)
    check_image_enforces_auth(project)
    read_environment(project)  # a .chroma_env that contradicts the settings is refused here too
    return project


def export_compose(root: Path, output: Path | None) -> str:
    project = _load(root)
    base = output.absolute().parent if output else Path.cwd()
    if output is not None:
        _check_output(output)
    mounted: list[str] = []
    user = gateway_user()
    tls = ensure_tls(project)
    if project.settings.uses_gateway:
        write_gateway_files(plan_gateway(project, user, folder=COMPOSE_GATEWAY_DIR, tls=tls), project.root)
    else:
        mounted = list(credential_file_names(project.settings))
    text = render_compose(project, mounted, str(base), COMPOSE_GATEWAY_DIR, user,
                          SERVER_TLS_DIR if tls else None)
    _write(output, text, PUBLIC_MODE)
    return text


def export_kubernetes(root: Path, output: Path | None, namespace: str | None) -> str:
    project = _load(root)
    if output is not None:
        _check_output(output)
    sidecar = None
    tls = ensure_tls(project)
    if project.settings.uses_gateway:
        # In a pod the gateway reaches Chroma on localhost and listens on a port of its own.
        plan = plan_gateway(project, gateway_user(), listen=GATEWAY_POD_PORT, tls=tls)
        sidecar = {path.name: text.encode() for path, (text, *_) in plan.files.items()}
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
