"""From a loaded project to the container it should run: shared by up, status and down."""

from __future__ import annotations

from pathlib import Path

from chromactl import fsio
from chromactl.credentials import PROBE_USER, credential_files
from chromactl.envfile import ENV_FILE, parse_env_file, server_environment
from chromactl.errors import ChromactlError
from chromactl.images import auth_verdict, data_path
from chromactl.project import Project
from chromactl.spec import ContainerSpec, build_spec


def read_environment(project: Project) -> dict[str, str]:
    """The container's environment, read from .chroma_env as `docker run --env-file`
    would. Extra variables are the operator's to add; the auth ones must still say
    what chromactl.yaml says, or the server would not run the auth it is meant to."""
    text = fsio.read_text(project.root / ENV_FILE)
    if text is None:
        raise ChromactlError(f"{ENV_FILE} is missing", hint="recreate it with `chromactl init --force`")
    env = parse_env_file(text)
    expected = server_environment(project.settings)
    for key, value in expected.items():
        if env.get(key) != value:
            raise ChromactlError(f"{ENV_FILE}: {key} does not match chromactl.yaml (auth {project.settings.auth})",
                                 hint="rewrite it with `chromactl init --force`")
    for key in env:
        if key.startswith(("CHROMA_SERVER_AUTH", "CHROMA_AUTH_")) and key not in expected:
            raise ChromactlError(f"{ENV_FILE}: {key} is set but chromactl.yaml says auth {project.settings.auth}",
                                 hint="remove it, or rewrite the file with `chromactl init --force`")
    return env


def mounted_files(project: Project) -> dict[str, bytes]:
    contents = {}
    for name in credential_files(project.settings):
        try:
            contents[name] = (project.root / name).read_bytes()
        except OSError:
            raise ChromactlError(f"cannot read {name}") from None
    return contents


def check_image_enforces_auth(project: Project) -> None:
    """Refuse auth on an image whose tag says it ignores the settings."""
    settings = project.settings
    verdict = auth_verdict(settings.image)
    if settings.auth_enabled and verdict.enforces_auth is False:
        raise ChromactlError(f"refusing auth {settings.auth}: {verdict.reason}",
                             hint="use chromadb/chroma:0.6.3 (`chromactl init --force --image chromadb/chroma:0.6.3`)")


def check_probe(project: Project) -> None:
    if not project.settings.auth_enabled:
        return
    probe = project.credentials.get(PROBE_USER)
    if probe is None or not project.probe_secret:
        raise ChromactlError(f"the internal user {PROBE_USER!r} or its secret is missing, so auth cannot be verified",
                             hint="recreate it with `chromactl init --force` (users are kept)")
    if project.settings.auth == "token" and project.probe_secret not in probe.tokens:
        raise ChromactlError(f".chromactl/probe-secret does not match {PROBE_USER}'s token",
                             hint=f"renew both with `chromactl creds rotate {PROBE_USER}`")


def plan_container(project: Project, image_id: str, working_dir: str | None) -> ContainerSpec:
    return build_spec(str(project.root), project.settings, read_environment(project), mounted_files(project),
                      image_id, data_path(project.settings.image, working_dir))


def env_file_path(project: Project) -> Path:
    return project.root / ENV_FILE
