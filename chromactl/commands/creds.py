"""`chromactl creds add|list|rm|rotate`: the users and secrets of a project, changed in
the files under the project lock, then put in effect on the running server at once
(chromactl.deploy.apply_change). A revocation (rm, rotate) that could not reach a
running server is reported as such: the old secret still works there."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping

from chromactl import fsio
from chromactl import roles as rolemod
from chromactl.certs import endpoint, read_tls
from chromactl.clients import Connection
from chromactl.credentials import (
    PROBE_USER,
    credential_digests,
    User,
    check_scope,
    check_username,
    generate_password,
    generate_token,
    hash_password_for,
    password_problem,
    token_problem,
)
from chromactl.deploy import Applied, Reporter, apply_change
from chromactl.engine_api import Engine, EngineUnavailable
from chromactl.errors import EXIT_DOCKER_UNAVAILABLE, ChromactlError, UsageError
from chromactl.plan import scope_refusal
from chromactl.project import Project, credential_file_contents, load_project, project_lock
from chromactl.records import revocation_pending
from chromactl.recovery import recover
from chromactl.scaffold import effective_role

# Asked for a new secret of a kind ("password" or "token"); returns it, or None to
# have one generated. The CLI decides where it comes from (stdin, a prompt).
SecretSource = Callable[[str], "str | None"]


@dataclass(frozen=True)
class Effect:
    """How a change reached the running server."""

    applied: Applied
    revocation_pending: bool  # a running server may still accept a secret or right the change took away
    error: ChromactlError | None = None  # why applying failed (applied is then FAILED)

    @property
    def in_effect(self) -> bool:
        return self.error is None and self.applied.in_effect

    @property
    def exit_code(self) -> int:
        """Non-zero when a revocation could not reach the server (not asked to wait: --no-apply),
        or when applying failed."""
        if self.error is not None:
            return self.error.exit_code
        if self.revocation_pending and self.applied is Applied.NO_ENGINE:
            return EXIT_DOCKER_UNAVAILABLE
        return 0


@dataclass(frozen=True)
class SecretResult:
    user: str
    role: str
    secret: str  # shown once
    kind: str  # "password" or "token"
    generated: bool
    rotated: bool = False
    warnings: tuple[str, ...] = ()
    effect: Effect | None = None
    tenant: str | None = None  # the user's scope (None: server-wide)
    databases: tuple[str, ...] = ()  # empty with a tenant: all of its databases
    connection: Connection | None = None  # how a scoped user's client connects (the snippets)


@dataclass(frozen=True)
class UserInfo:
    user: str
    role: str
    tokens: int
    password: bool
    internal: bool = False
    tenant: str | None = None
    databases: tuple[str, ...] = ()


@dataclass(frozen=True)
class ListResult:
    auth: str
    rbac: bool
    users: tuple[UserInfo, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class RemoveResult:
    user: str
    effect: Effect | None = None


def _load(root: Path, given: Mapping[str, Any] | None = None) -> Project:
    project = load_project(root, given)
    if not project.settings.auth_enabled:
        raise ChromactlError("this project has auth none: there are no credentials to manage",
                             hint="turn auth on with `chromactl init --force --auth token` (or basic)")
    return project


def _effect(root: Path, connect: Callable[[], Engine] | None, reporter: Reporter) -> Effect:
    """Apply the files just written to the running server (connect None: --no-apply), and
    tell whether a running server may still accept what the change took away."""
    project = load_project(root)

    def pending() -> bool:
        return revocation_pending(root, credential_digests(project.credentials))

    if connect is None:
        return Effect(Applied.DEFERRED, pending())
    try:
        engine = connect()
    except EngineUnavailable:
        return Effect(Applied.NO_ENGINE, pending())
    try:
        with project_lock(root):
            if recover(root, engine, reporter) is not None:
                project = load_project(root)
            applied = apply_change(project, lambda: engine, reporter)
    except ChromactlError as exc:  # the files are changed; the running server was not brought to them
        return Effect(Applied.FAILED, pending(), exc)
    return Effect(applied, pending() if not applied.in_effect else False)


def _secret_kind(project: Project) -> str:
    return "token" if project.settings.auth == "token" else "password"


def _take_secret(project: Project, source: SecretSource) -> tuple[str, bool]:
    kind = _secret_kind(project)
    secret = source(kind)
    if secret is None:
        return (generate_token() if kind == "token" else generate_password()), True
    problem = token_problem(secret) if kind == "token" else password_problem(secret)
    if problem:
        raise UsageError(f"cannot use that {kind}: {problem}")
    return secret, False


def _check_token_unused(project: Project, name: str, secret: str) -> None:
    if any(other.name != name and secret in other.tokens for other in project.credentials.users):
        raise ChromactlError("that token is already in use by another user")


def _with_secret(project: Project, user: User, secret: str, generated: bool) -> User:
    if project.settings.auth == "token":
        _check_token_unused(project, user.name, secret)
        return replace(user, tokens=(secret,))
    return replace(user, password_hash=hash_password_for(secret, project.settings, generated=generated))


def _reload_locked(root: Path, before: Project, given: Mapping[str, Any] | None) -> Project:
    """The project again, now under the lock: another run may have changed it meanwhile."""
    current = _load(root, given)
    if current.settings != before.settings:
        raise ChromactlError("the project's settings changed while this command ran; run it again")
    return current


def _save(project: Project, credentials, probe_secret: str | None = None) -> None:
    fsio.write_files(credential_file_contents(project.root, project.settings, credentials, probe_secret), project.root)


def add_user(root: Path, name: str, role: str | None, source: SecretSource, connect: Callable[[], Engine] | None,
             reporter: Reporter, given: Mapping[str, Any] | None = None, *, tenant: str | None = None,
             databases: tuple[str, ...] = (), engine_address: str | None = None) -> SecretResult:
    """Add a user, server-wide or scoped to `tenant` (and `databases` of it; none: all of them)."""
    project = _load(root, given)
    check_username(name)
    check_scope(tenant, databases)
    if name == PROBE_USER:
        raise UsageError(f"{PROBE_USER!r} is reserved for chromactl's own auth probe")
    if project.credentials.get(name) is not None:
        raise ChromactlError(f"user {name!r} already exists", hint=f"change its secret with `chromactl creds rotate {name}`")
    if tenant is not None:
        refusal = scope_refusal(project.settings, name, tenant)
        if refusal is not None:
            raise refusal
    warnings: tuple[str, ...] = ()
    if project.settings.rbac:
        role = role or rolemod.DEFAULT_ROLE
        usable = [r for r in (project.credentials.roles or {}) if r != rolemod.PROBE_ROLE]
        if role not in usable:
            raise UsageError(f"unknown role {role!r}: use one of {', '.join(usable)}")
    elif role is not None:
        warnings = (f"RBAC is off in this project: {name!r} gets full access whatever the role; "
                    "turn RBAC on with `chromactl init --force --rbac`",)
        role = None

    secret, generated = _take_secret(project, source)
    user = _with_secret(project, User(name=name, role=role, tenant=tenant, databases=databases), secret,
                        generated)  # bcrypt runs before taking the lock
    with project_lock(project.root):
        current = _reload_locked(root, project, given)
        if current.credentials.get(name) is not None:
            raise ChromactlError(f"user {name!r} already exists")
        if current.settings.auth == "token":
            _check_token_unused(current, name, secret)
        _save(current, current.credentials.with_user(user))
    connection = None
    if tenant is not None:
        where = endpoint(project.settings.host, project.settings.port, read_tls(project), engine_address)
        connection = Connection(project.settings, where.url, where.cafile, tenant, databases)
    return SecretResult(name, effective_role(project.settings, role), secret, _secret_kind(project), generated,
                        warnings=warnings, effect=_effect(project.root, connect, reporter), tenant=tenant,
                        databases=databases, connection=connection)


def rotate_user(root: Path, name: str, source: SecretSource, connect: Callable[[], Engine] | None,
                reporter: Reporter, given: Mapping[str, Any] | None = None) -> SecretResult:
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
    return SecretResult(name, effective_role(project.settings, existing.role), secret, _secret_kind(project),
                        generated, rotated=True, effect=_effect(project.root, connect, reporter),
                        tenant=existing.tenant, databases=existing.databases)


def remove_user(root: Path, name: str, connect: Callable[[], Engine] | None, reporter: Reporter, *,
                force: bool = False) -> RemoveResult:
    with project_lock(root):
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
    return RemoveResult(name, _effect(project.root, connect, reporter))


def list_users(root: Path) -> ListResult:
    project = _load(root)
    users = tuple(
        UserInfo(user=u.name, role=effective_role(project.settings, u.role) if not u.internal else rolemod.PROBE_ROLE,
                 tokens=len(u.tokens), password=u.password_hash is not None, internal=u.internal, tenant=u.tenant,
                 databases=u.databases)
        for u in project.credentials.users
    )
    return ListResult(auth=project.settings.auth, rbac=project.settings.rbac, users=users)
