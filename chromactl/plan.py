"""From a loaded project to the container it should run: shared by up, status and down."""

from __future__ import annotations

import os
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
    """The credential files the Chroma container mounts: none behind a gateway."""
    if project.settings.uses_gateway:
        return {}
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
    if settings.auth_enabled and not settings.uses_gateway and verdict.enforces_auth is False:
        raise ChromactlError(f"refusing auth {settings.auth}: {verdict.reason}",
                             hint="put the nginx gateway in front (`chromactl init --force --gateway nginx`), or use "
                                  "chromadb/chroma:0.6.3")


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


# --- the gateway --------------------------------------------------------------------------

GATEWAY_DIR = ".chromactl/gateway"


def gateway_files(project: Project, *, folder: str = GATEWAY_DIR, upstream: str | None = None,
                  listen: int | None = None) -> dict[Path, tuple]:
    """The gateway's configuration, rendered from the project's credentials, as files
    to write into its folder (0600: they hold tokens or password hashes)."""
    from chromactl.gateway import CONFIG_FILE, WORKER_GID, render_gateway, uncovered_actions
    from chromactl.spec import CONTAINER_PORT, container_name

    settings = project.settings
    if settings.rbac:
        missing = uncovered_actions(project.credentials.roles or {})
        if missing:
            raise ChromactlError(f"the gateway's route table has no route for action {missing[0]!r}, "
                                 "which a role in authz.yaml grants",
                                 hint="remove the action from roles_mapping, or update chromactl")
    rendered = render_gateway(settings, project.credentials, upstream or f"{container_name(settings)}:{CONTAINER_PORT}",
                              listen or CONTAINER_PORT)
    target = project.root / folder
    files: dict[Path, tuple] = {}
    for name, text in rendered.items():
        if name == CONFIG_FILE:
            files[target / name] = (text, 0o600)  # read by nginx's master process, root
        else:
            # The password hashes are read by nginx's workers, user nginx: readable by its group only.
            files[target / name] = (text, 0o640, WORKER_GID)
    return files


def ensure_gateway_dir(root: Path, name: str = GATEWAY_DIR) -> None:
    """The folder mounted into the gateway: nginx's workers (group 101) must enter it."""
    from chromactl.gateway import WORKER_GID

    folder = root / name
    fsio.ensure_dir(folder, 0o750)
    try:
        os.chown(folder, -1, WORKER_GID)
        os.chmod(folder, 0o750)
    except OSError as exc:
        raise ChromactlError(f"cannot give {folder} to group {WORKER_GID} (nginx's workers): "
                             f"{os.strerror(exc.errno).lower()}", hint="run chromactl as root or a member of that group") from None


def gateway_files_changed(files: dict[Path, tuple]) -> bool:
    return any(fsio.read_text(path) != text for path, (text, *_) in files.items())


def plan_gateway(project: Project, image_id: str) -> ContainerSpec:
    from chromactl.spec import build_gateway_spec

    return build_gateway_spec(str(project.root), project.settings, str(project.root / GATEWAY_DIR), image_id)
