"""A chromactl project on disk: where its files live, loading them, writing them."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

from chromactl import fsio
from chromactl.credentials import Credentials, credential_file_names, load_credentials, render_credential_files
from chromactl.envfile import ENV_FILE, operator_variables, render_env_file
from chromactl.errors import ChromactlError
from chromactl.settings import SETTINGS_FILE, Settings, parse_settings_file, render_settings_file, resolve_settings

STATE_DIR = ".chromactl"
PROBE_SECRET_FILE = f"{STATE_DIR}/probe-secret"
LOCK_FILE = f"{STATE_DIR}/lock"
GITIGNORE_FILE = ".gitignore"
# Files that hold secrets or data (`chromactl backup` writes into backups/), kept out of version control.
GITIGNORE_ENTRIES = ("server.htpasswd", "authz.yaml", f"{STATE_DIR}/", "backups/")

SECRET_MODE = 0o600
PUBLIC_MODE = 0o644


@dataclass(frozen=True)
class Project:
    """Every project file, read once, checked, and passed down: no layer reads them again."""

    root: Path
    settings: Settings
    credentials: Credentials
    probe_secret: str | None  # the internal probe user's password or token
    credential_texts: Mapping[str, str] = field(default_factory=dict)  # file name -> text, as read
    env_text: str | None = None  # .chroma_env as read; None when missing


def is_project(root: Path) -> bool:
    return (root / SETTINGS_FILE).is_file()


def read_stored_settings(root: Path) -> dict[str, Any] | None:
    text = fsio.read_text(root / SETTINGS_FILE, root)
    return None if text is None else parse_settings_file(text)


def no_project(root: Path, hint: str = "run `chromactl init` there, or pass --dir") -> ChromactlError:
    return ChromactlError(f"no chromactl project in {root}", hint=hint)


def load_settings(root: Path, given: Mapping[str, Any] | None = None) -> Settings:
    """Only the settings: enough for down and logs, which work even when credential files are broken."""
    stored = read_stored_settings(root)
    if stored is None:
        raise no_project(root)
    return resolve_settings(given or {}, stored, folder_name=root.name)


def load_project(root: Path, given: Mapping[str, Any] | None = None) -> Project:
    """Load and check every project file; `given` holds flag/env overrides. The files are
    read under a shared lock: a concurrent `creds` run replaces them together."""
    settings = load_settings(root, given)
    with fsio.locked(root / LOCK_FILE, shared=True, root=root):
        texts = {name: fsio.read_text(root / name, root) for name in credential_file_names(settings)}
        secret = fsio.read_text(root / PROBE_SECRET_FILE, root)
        env_text = fsio.read_text(root / ENV_FILE, root)
    credentials = load_credentials(settings, texts)
    return Project(root, settings, credentials, secret.strip() if secret else None,
                   {name: text for name, text in texts.items() if text is not None}, env_text)


def write_settings(root: Path, settings: Settings) -> None:
    """Rewrite chromactl.yaml for these settings, atomically."""
    fsio.write_files({root / SETTINGS_FILE: (render_settings_file(settings), PUBLIC_MODE)}, root)


def credential_file_contents(root: Path, settings: Settings, credentials: Credentials,
                             probe_secret: str | None) -> dict[Path, tuple[str, int]]:
    files = {root / name: (text, SECRET_MODE) for name, text in render_credential_files(credentials, settings).items()}
    if probe_secret is not None:
        files[root / PROBE_SECRET_FILE] = (probe_secret + "\n", SECRET_MODE)
    return files


def project_file_contents(root: Path, settings: Settings, credentials: Credentials,
                          probe_secret: str | None) -> dict[Path, tuple[str, int]]:
    """Every file `init` writes, with its mode."""
    files = {
        root / SETTINGS_FILE: (render_settings_file(settings), PUBLIC_MODE),
        # No secrets by default, but it is where operators are told to put them.
        root / ENV_FILE: (render_env_file(settings, operator_variables(fsio.read_text(root / ENV_FILE, root))),
                          SECRET_MODE),
    }
    files.update(credential_file_contents(root, settings, credentials, probe_secret))
    gitignore = updated_gitignore(fsio.read_text(root / GITIGNORE_FILE, root))
    if gitignore is not None:
        files[root / GITIGNORE_FILE] = (gitignore, PUBLIC_MODE)
    return files


def updated_gitignore(existing: str | None) -> str | None:
    """The .gitignore with the secret files added, or None when nothing is missing."""
    text = existing or ""
    present = {line.strip() for line in text.splitlines()}
    missing = [entry for entry in GITIGNORE_ENTRIES if entry not in present and "/" + entry not in present]
    if not missing:
        return None
    if text and not text.endswith("\n"):
        text += "\n"
    return text + "# chromactl: files holding secrets\n" + "".join(entry + "\n" for entry in missing)


@contextmanager
def project_lock(root: Path) -> Iterator[None]:
    with fsio.locked(root / LOCK_FILE, root=root):
        yield


def rewrite_env_file(root: Path, settings: Settings) -> None:
    """.chroma_env anew for these settings, keeping the variables the operator added."""
    existing = fsio.read_text(root / ENV_FILE, root)
    fsio.write_files({root / ENV_FILE: (render_env_file(settings, operator_variables(existing)), SECRET_MODE)}, root)


def put_back_files(root: Path, saved: Mapping[str, bytes | None]) -> None:
    """Files as they were (name -> content; None: there was none), atomically."""
    present = {root / name: (content.decode(), PUBLIC_MODE if name == SETTINGS_FILE else SECRET_MODE)
               for name, content in saved.items() if content is not None}
    fsio.write_files(present, root)
    for name, content in saved.items():
        if content is None:
            (root / name).unlink(missing_ok=True)


def find_project(start: Path) -> Path | None:
    """The nearest folder at or above `start` holding chromactl.yaml (as git finds its
    repository), or None."""
    start = start.absolute()
    for folder in (start, *start.parents):
        if is_project(folder):
            return folder
    return None
