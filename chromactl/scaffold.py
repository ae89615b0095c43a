"""Writing a project: a new one (`init`, and `up` in an empty folder), or new settings for
an existing one (`init --force`, `upgrade`), keeping its users."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Mapping

from chromactl import fsio
from chromactl import roles as rolemod
from chromactl.credentials import (
    PROBE_USER,
    Credentials,
    User,
    credential_file_names,
    generate_password,
    hash_generated,
    generate_token,
    hash_password_for,
    load_credentials,
    new_credentials,
    password_problem,
)
from chromactl.certs import ensure_tls
from chromactl.errors import ChromactlError, UsageError
from chromactl.project import (
    load_project,
    PROBE_SECRET_FILE,
    SECRET_MODE,
    STATE_DIR,
    project_file_contents,
    project_lock,
    read_stored_settings,
)
from chromactl.records import record_served
from chromactl.settings import Settings, resolve_settings, without_derived_defaults

ADMIN_USER = "admin"


@dataclass(frozen=True)
class InitResult:
    project: Path
    settings: Settings
    user: str | None = None  # the admin created now; None when users were kept or auth is none
    role: str | None = None
    secret: str | None = None  # shown once
    kept_users: tuple[str, ...] = ()
    backups: tuple[str, ...] = ()
    reinitialised: bool = False


def effective_role(settings: Settings, role: str | None) -> str:
    """Without RBAC every authenticated user has full access, i.e. is an admin."""
    return role if settings.rbac and role else "admin"


def new_secret_user(settings: Settings, name: str, role: str | None, password: str | None = None) -> tuple[User, str]:
    """A user with a fresh secret (generated unless a password is given)."""
    if settings.auth == "token":
        secret = generate_token()
        return User(name=name, role=role, tokens=(secret,)), secret
    if password is None:
        secret = generate_password()
        return User(name=name, role=role, password_hash=hash_generated(secret, settings)), secret
    return User(name=name, role=role, password_hash=hash_password_for(password, settings, generated=False)), password


def init_project(root: Path, given: Mapping[str, Any], *, force: bool = False,
                 read_password: Callable[[], str] | None = None) -> InitResult:
    """Write the project. `read_password`, when given, supplies the first admin's
    password (basic auth); it is called only once the settings are known to be valid."""
    root = root.absolute()
    stored = read_stored_settings(root) if root.is_dir() else None
    if stored is not None and not force:
        raise ChromactlError(f"{root} is already a chromactl project",
                             hint="use --force to rewrite its settings; credentials are kept")
    settings = resolve_settings(given, without_derived_defaults(stored) if stored else None, folder_name=root.name)
    admin_password = None
    if read_password is not None:
        if settings.auth != "basic":
            raise UsageError("--password-stdin sets a password, which only basic auth uses")
        admin_password = read_password()
        problem = password_problem(admin_password)
        if problem:
            raise ChromactlError(f"cannot use that password: {problem}")

    fsio.ensure_dir(root)
    with project_lock(root):
        stored = read_stored_settings(root)
        if stored is not None and not force:
            raise ChromactlError(f"{root} is already a chromactl project", hint="use --force")
        result = _write_project(root, settings, stored, admin_password)
    if settings.tls == "auto":  # the project's CA exists from the start: clients can be given it now
        ensure_tls(load_project(root))
    return result


def _write_project(root: Path, settings: Settings, stored: Mapping[str, Any] | None,
                   admin_password: str | None) -> InitResult:
    credentials = new_credentials(settings)
    probe_secret: str | None = None
    backups: dict[Path, tuple[str, int]] = {}
    obsolete: list[Path] = []

    if stored is not None:
        old = resolve_settings({}, stored, folder_name=root.name)
        old_texts = {name: fsio.read_text(root / name, root) for name in credential_file_names(old)}
        # Refuses (rather than drops) credentials it cannot read.
        old_credentials = load_credentials(old, old_texts)
        if old.auth == settings.auth and settings.auth != "none":
            credentials = _carry_over(old, old_credentials, settings)
            probe_secret = fsio.read_text(root / PROBE_SECRET_FILE, root)
            probe_secret = probe_secret.strip() if probe_secret and credentials.get(PROBE_USER) else None
        else:
            # Tokens cannot become passwords or the reverse: keep the old files aside.
            stamp = time.strftime("%Y%m%d-%H%M%S")
            for name, text in old_texts.items():
                if text is not None:
                    backups[root / STATE_DIR / "backups" / f"{name}.{stamp}"] = (text, SECRET_MODE)
                    if name not in credential_file_names(settings):
                        obsolete.append(root / name)

    result = InitResult(project=root, settings=settings, reinitialised=stored is not None,
                        kept_users=tuple(u.name for u in credentials.users if not u.internal),
                        backups=tuple(str(p.relative_to(root)) for p in backups))

    if settings.auth_enabled:
        if admin_password is not None and result.kept_users:
            raise ChromactlError("--password-stdin would set the first admin's password, but this project's users are kept",
                                 hint="change a password with `chromactl creds rotate USER --password-stdin`")
        if probe_secret is None:
            probe, probe_secret = new_secret_user(settings, PROBE_USER, rolemod.PROBE_ROLE if settings.rbac else None)
            credentials = credentials.with_user(probe)
        if not result.kept_users:
            admin, secret = new_secret_user(settings, ADMIN_USER, "admin" if settings.rbac else None, admin_password)
            credentials = credentials.with_user(admin)
            result = replace(result, user=ADMIN_USER, role="admin", secret=secret)

    files = project_file_contents(root, settings, credentials, probe_secret)
    if backups:
        fsio.ensure_dir(root / STATE_DIR / "backups", 0o700, root=root)
        files = {**backups, **files}
    fsio.write_files(files, root)
    if stored is None:
        record_served(root, frozenset())  # a new project: no server has been given anything yet
    for path in obsolete:
        path.unlink(missing_ok=True)
    return result


def _carry_over(old: Settings, creds: Credentials, new: Settings) -> Credentials:
    """The same users under new settings. Turning RBAC on keeps everyone's full
    access (role admin) rather than cutting anyone off silently."""
    if not new.rbac:
        return Credentials(users=tuple(replace(u, role=None) for u in creds.users))
    roles = dict(creds.roles) if old.rbac and creds.roles else dict(rolemod.BUILTIN_ROLES)
    roles.setdefault(rolemod.PROBE_ROLE, rolemod.PROBE)
    users = []
    for user in creds.users:
        role = user.role or (rolemod.PROBE_ROLE if user.internal else "admin")
        users.append(replace(user, role=role))
    return Credentials(users=tuple(users), roles=roles)
