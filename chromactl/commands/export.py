"""`chromactl export compose|kubernetes`: the same deployment for an orchestrator."""

from __future__ import annotations

from pathlib import Path

from chromactl import fsio
from chromactl.credentials import credential_files
from chromactl.errors import ChromactlError
from chromactl.export import render_compose, render_kubernetes
from chromactl.plan import check_image_enforces_auth, mounted_files, read_environment
from chromactl.project import PUBLIC_MODE, SECRET_MODE, Project, load_project


def _load(root: Path) -> Project:
    project = load_project(root.absolute())
    if project.settings.uses_gateway:
        raise ChromactlError("this project puts an nginx gateway in front of Chroma, which export does not write yet: "
                             "the exported server would run without auth",
                             hint="export works for projects without a gateway (a 0.6.3 image)")
    check_image_enforces_auth(project)
    read_environment(project)  # a .chroma_env that contradicts the settings is refused here too
    return project


def export_compose(root: Path, output: Path | None) -> str:
    project = _load(root)
    base = (output.absolute().parent if output else Path.cwd())
    text = render_compose(project, list(credential_files(project.settings)), str(base))
    _write(output, text, PUBLIC_MODE)
    return text


def export_kubernetes(root: Path, output: Path | None, namespace: str | None) -> str:
    project = _load(root)
    text = render_kubernetes(project, read_environment(project), mounted_files(project), namespace)
    _write(output, text, SECRET_MODE)  # it holds the credentials
    return text


def _write(output: Path | None, text: str, mode: int) -> None:
    if output is None:
        return
    output = output.absolute()
    if output.is_dir():
        raise ChromactlError(f"-o {output}: is a folder; give a file name")
    if not output.parent.is_dir():
        raise ChromactlError(f"-o {output}: the folder {output.parent} does not exist")
    fsio.write_files({output: (text, mode)})
