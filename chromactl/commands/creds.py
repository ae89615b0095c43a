"""`chromactl creds add|list|rm|rotate`: the users and secrets of a project."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping

from chromactl import fsio
from chromactl import roles as rolemod
from chromactl.commands.init import effective_role
from chromactl.credentials import (
    PROBE_USER,
    User,
    check_username,
    generate_password,
    hash_generated,
    generate_token,
    hash_password,
    password_problem,
    token_problem,
)
from chromactl.errors import ChromactlError
from chromactl.project import Project, credential_file_contents, load_project, project_lock

# Asked for a new secret of a kind ("password" or "token"); returns it, or None to
# have one generated. The CLI decides where it comes from (stdin, a prompt).
SecretSource = Callable[[str], "str | None"]


@dataclass(frozen=True)
class SecretResult:
    user: str
    role: str
    secret: str  # shown once
    kind: str  # "password" or "token"
    generated: bool
    warnings: tuple[str, ...] = ()
    applied: str | None = None  # how the change reached the running server; None: not tried


@dataclass(frozen=True)
class UserInfo:
    user: str
    role: str
    tokens: int
    password: bool
    internal: bool = False


@dataclass(frozen=True)
class ListResult:
    auth: str
    rbac: bool
    users: tuple[UserInfo, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class RemoveResult:
    user: str
    applied: str | None = None


def apply_change(root: Path, reporter) -> str:
    """Make a credentials change take effect on the running instance at once: the gateway
    reloads (no restart), or, natively, Chroma is recreated (it reads credentials at start).
    Returns what happened, in words."""
    from chromactl.commands.up import up
    from chromactl.engine import Engine, EngineUnavailable
    from chromactl.plan import owned_container
    from chromactl.spec import container_name

    root = root.absolute()
    settings = load_project(root).settings
    try:
        engine = Engine.connect()
    except EngineUnavailable:
        return "Not applied: no Docker engine answers; it takes effect at the next `chromactl up`"
    chroma = owned_container(engine, root, container_name(settings))
    if chroma is None or chroma.state != "running":
        return "The server is not running; it takes effect at the next `chromactl up`"
    result = up(root, reporter, pull="never")
    if result.gateway_action == "reloaded":
        return f"In effect now: {result.gateway.name} reloaded its credentials (Chroma kept running)"
    if result.action == "recreated":
        return f"In effect now: {result.spec.name} was recreated to read them (a few seconds without service)"
    return f"In effect now (Chroma {result.action}, gateway {result.gateway_action or '-'})"


def _load(root: Path, given: Mapping[str, Any] | None = None) -> Project:
    project = load_project(root, given)
    if not project.settings.auth_enabled:
        raise ChromactlError("this project has auth none: there are no credentials to manage",
                             hint="turn auth on with `chromactl init --force --auth token` (or basic)")
    return project


def _secret_kind(project: Project) -> str:
    return "token" if project.settings.auth == "token" else "password"


def _take_secret(project: Project, source: SecretSource) -> tuple[str, bool]:
    kind = _secret_kind(project)
    secret = source(kind)
    if secret is None:
        return (generate_token() if kind == "token" else generate_password()), True
    problem = token_problem(secret) if kind == "token" else password_problem(secret)
    if problem:
        raise ChromactlError(f"cannot use that {kind}: {problem}")
    return secret, False


def _check_token_unused(project: Project, name: str, secret: str) -> None:
    if any(other.name != name and secret in other.tokens for other in project.credentials.users):
        raise ChromactlError("that token is already in use by another user")


def _with_secret(project: Project, user: User, secret: str, generated: bool) -> User:
    if project.settings.auth == "token":
        _check_token_unused(project, user.name, secret)
        return replace(user, tokens=(secret,))
    if generated:
        return replace(user, password_hash=hash_generated(secret, project.settings))
    return replace(user, password_hash=hash_password(secret, project.settings.bcrypt_rounds))


def _reload_locked(root: Path, before: Project, given: Mapping[str, Any] | None) -> Project:
    """The project again, now under the lock: another run may have changed it meanwhile."""
    current = _load(root, given)
    if current.settings != before.settings:
        raise ChromactlError("the project's settings changed while this command ran; run it again")
    return current


def _save(project: Project, credentials, probe_secret: str | None = None) -> None:
    fsio.write_files(credential_file_contents(project.root, project.settings, credentials, probe_secret))


def add_user(root: Path, name: str, role: str | None, source: SecretSource,
             given: Mapping[str, Any] | None = None) -> SecretResult:
    project = _load(root, given)
    check_username(name)
    if name == PROBE_USER:
        raise ChromactlError(f"{PROBE_USER!r} is reserved for chromactl's own auth probe")
    if project.credentials.get(name) is not None:
        raise ChromactlError(f"user {name!r} already exists", hint=f"change its secret with `chromactl creds rotate {name}`")
    warnings: tuple[str, ...] = ()
    if project.settings.rbac:
        role = role or rolemod.DEFAULT_ROLE
        usable = [r for r in (project.credentials.roles or {}) if r != rolemod.PROBE_ROLE]
        if role not in usable:
            raise ChromactlError(f"unknown role {role!r}: use one of {', '.join(usable)}")
    elif role is not None:
        warnings = (f"RBAC is off in this project: {name!r} gets full access whatever the role; "
                    "turn RBAC on with `chromactl init --force --rbac`",)
        role = None

    secret, generated = _take_secret(project, source)
    user = _with_secret(project, User(name=name, role=role), secret, generated)  # bcrypt runs before taking the lock
    with project_lock(project.root):
        current = _reload_locked(root, project, given)
        if current.credentials.get(name) is not None:
            raise ChromactlError(f"user {name!r} already exists")
        if current.settings.auth == "token":
            _check_token_unused(current, name, secret)
        _save(current, current.credentials.with_user(user))
    return SecretResult(name, effective_role(project.settings, role), secret, _secret_kind(project), generated, warnings)


def rotate_user(root: Path, name: str, source: SecretSource, given: Mapping[str, Any] | None = None) -> SecretResult:
    project = _load(root, given)
    existing = project.credentials.get(name)
    if existing is None:
        raise ChromactlError(f"no user {name!r} in this project", hint="see `chromactl creds list`")
    secret, generated = _take_secret(project, source)
    user = _with_secret(project, existing, secret, generated)
    with project_lock(project.root):
        current = _reload_locked(root, project, given)
        if current.credentials.get(name) is None:
            raise ChromactlError(f"no user {name!r} in this project")
        if current.settings.auth == "token":
            _check_token_unused(current, name, secret)
        _save(current, current.credentials.with_user(user), secret if name == PROBE_USER else None)
    return SecretResult(name, effective_role(project.settings, existing.role), secret, _secret_kind(project), generated)


def remove_user(root: Path, name: str, *, force: bool = False) -> RemoveResult:
    with project_lock(root.absolute()):
        project = _load(root)
        user = project.credentials.get(name)
        if user is None:
            raise ChromactlError(f"no user {name!r} in this project", hint="see `chromactl creds list`")
        if user.internal:
            raise ChromactlError(f"{PROBE_USER!r} is how `up` and `status` prove auth is enforced; it cannot be removed",
                                 hint=f"give it a new secret with `chromactl creds rotate {PROBE_USER}`")
        others = [u for u in project.credentials.users if not u.internal and u.name != name]
        admins = [u for u in others if effective_role(project.settings, u.role) == "admin"]
        if not force and effective_role(project.settings, user.role) == "admin" and not admins:
            raise ChromactlError(f"{name!r} is the last admin: nobody could manage the server without it",
                                 hint="add another admin first, or pass --force")
        _save(project, project.credentials.without(name))
    return RemoveResult(name)


def list_users(root: Path) -> ListResult:
    project = _load(root)
    users = tuple(
        UserInfo(user=u.name, role=effective_role(project.settings, u.role) if not u.internal else rolemod.PROBE_ROLE,
                 tokens=len(u.tokens), password=u.password_hash is not None, internal=u.internal)
        for u in project.credentials.users
    )
    return ListResult(auth=project.settings.auth, rbac=project.settings.rbac, users=users)
