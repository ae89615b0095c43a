"""The backup files chromactl writes: where they go by default, and their manifest. The
file format itself is chromactl.archive's."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from chromactl import __version__, archive, fsio
from chromactl.credentials import credential_file_names
from chromactl.envfile import ENV_FILE
from chromactl.fingerprint import describe, release_of
from chromactl.project import PROBE_SECRET_FILE, Project
from chromactl.settings import SETTINGS_FILE
from chromactl.spec import volume_name
from chromactl.volumes import Spooled

BACKUP_DIR = "backups"
SUFFIX = ".chromactl-backup.tar"


def default_output(project: Project) -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    folder = project.root / BACKUP_DIR
    fsio.ensure_dir(folder, 0o700, root=project.root)
    return folder / f"{project.settings.name}-{stamp}{SUFFIX}"


def build_manifest(project: Project, spooled: Spooled, include_credentials: bool) -> dict:
    release = release_of(spooled.fingerprint)
    return {
        "format": archive.FORMAT,
        "chromactl_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "instance": project.settings.name,
        "image": project.settings.image,
        "image_id": spooled.image_id,
        "data_path": spooled.data_path,
        "volume": volume_name(project.settings),
        "fingerprint": spooled.fingerprint,
        "data": release.label if release else describe(spooled.fingerprint),
        "collections": spooled.collections,
        "records": sum(c["count"] for c in spooled.collections),
        "payload": {"file": archive.PAYLOAD, "sha256": spooled.sha256, "bytes": spooled.size},
        "consistent": "copied with the server stopped",
        "credentials": include_credentials,
    }


def project_files(project: Project) -> dict[str, bytes]:
    """The project's files, secrets included (only with --include-credentials)."""
    names = [SETTINGS_FILE, ENV_FILE, PROBE_SECRET_FILE, *credential_file_names(project.settings)]
    files = {}
    for name in names:
        path = project.root / name
        if path.is_file():
            files[name] = path.read_bytes()
    return files
