"""`chromactl tenant add|list`: Chroma's tenants and their databases, made and read through
its HTTP API (v2, Chroma 0.6 and 1.x) as one of the project's admins, over the project's
TLS with its CA.

Whose credential: under token auth an admin's token from authz.yaml (the project's own
files; never printed); under basic auth chromactl holds only hashes, so the operator gives
an admin's password (--password-stdin, or CHROMA_CLIENT_AUTH_CREDENTIALS=USER:PASSWORD as
the printed snippets read it). Adding is idempotent: what exists is reported as such.
Chroma has no route that lists tenants, so `list` asks about the tenants the project
knows: Chroma's default one, those of scoped users, and those `tenant add` made."""

from __future__ import annotations

import http.client
import json
import ssl
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Callable
from urllib.parse import quote

from chromactl.certs import endpoint, read_tls
from chromactl.clients import DEFAULT_DATABASE
from chromactl.credentials import PROBE_USER, check_scope
from chromactl.errors import EXIT_NOT_HEALTHY, ChromactlError, UsageError
from chromactl.probe import V2, Endpoint, credential_headers, request
from chromactl.project import Project, load_project, project_lock
from chromactl.records import record_tenant, remembered_tenants
from chromactl.scaffold import effective_role

DEFAULT_TENANT = "default_tenant"  # every Chroma server has it
TIMEOUT = 10.0


class Outcome(str, Enum):
    CREATED = "created"
    EXISTED = "existed"  # already there: reported, not an error


@dataclass(frozen=True)
class DatabaseOutcome:
    name: str
    outcome: Outcome


@dataclass(frozen=True)
class TenantAddResult:
    tenant: str
    outcome: Outcome
    databases: tuple[DatabaseOutcome, ...]
    url: str  # the server asked
    user: str | None  # the admin it was asked as (None: auth none)


@dataclass(frozen=True)
class TenantInfo:
    name: str
    exists: bool  # False: the project names it (a scoped user), the server does not have it
    databases: tuple[str, ...]
    users: tuple[str, ...]  # the project's users scoped to it


@dataclass(frozen=True)
class TenantListResult:
    url: str
    user: str | None
    tenants: tuple[TenantInfo, ...]


@dataclass(frozen=True)
class AdminCredential:
    """Who chromactl acts as: an admin's name and secret (None, None under auth none)."""

    user: str | None
    secret: str | None


# Reads an admin's password (basic auth), or None when the operator gave none.
PasswordSource = Callable[[], "str | None"]


def add_tenant(root: Path, tenant: str, databases: tuple[str, ...], *, password: PasswordSource,
               user: str | None = None, from_environment: str | None = None,
               engine_address: str | None = None) -> TenantAddResult:
    """Create the tenant and its databases (none given: the clients' default database), or
    report them as already there."""
    check_scope(tenant, databases)  # the names a scope may hold: what creds add --tenant accepts
    project = load_project(root)
    api = _Api(project, _admin(project, password, user, from_environment), engine_address)
    outcome = api.create(V2 + "/tenants", tenant, "tenant")
    made = tuple(DatabaseOutcome(d, api.create(f"{V2}/tenants/{_segment(tenant)}/databases", d, "database"))
                 for d in (databases or (DEFAULT_DATABASE,)))
    with project_lock(project.root):
        record_tenant(project.root, tenant)
    return TenantAddResult(tenant, outcome, made, api.target.url, api.admin.user)


def list_tenants(root: Path, *, password: PasswordSource, user: str | None = None,
                 from_environment: str | None = None, engine_address: str | None = None) -> TenantListResult:
    """The tenants the project knows, each with the databases the server holds for it."""
    project = load_project(root)
    api = _Api(project, _admin(project, password, user, from_environment), engine_address)
    scoped: dict[str, list[str]] = {}
    for u in project.credentials.users:
        if u.tenant is not None:
            scoped.setdefault(u.tenant, []).append(u.name)
    names = [DEFAULT_TENANT] + sorted((set(remembered_tenants(project.root)) | set(scoped)) - {DEFAULT_TENANT})
    tenants = []
    for name in names:
        exists = api.exists(f"{V2}/tenants/{_segment(name)}")
        databases = api.database_names(name) if exists else ()
        tenants.append(TenantInfo(name, exists, databases, tuple(scoped.get(name, ()))))
    return TenantListResult(api.target.url, api.admin.user, tuple(tenants))


def _segment(name: str) -> str:
    return quote(name, safe="")  # checked names need no quoting; a path segment either way


def _admin(project: Project, password: PasswordSource, user: str | None,
           from_environment: str | None) -> AdminCredential:
    settings = project.settings
    if settings.auth == "none":
        if user is not None:
            raise UsageError("--user: this project has auth none, there is no one to act as")
        return AdminCredential(None, None)
    if settings.auth == "token":
        if user is not None:
            raise UsageError("--user is for basic auth; under token auth chromactl uses an admin's token of "
                             "authz.yaml")
        admins = [u for u in project.credentials.users if u.name != PROBE_USER and u.tenant is None and u.tokens
                  and effective_role(settings, u.role) == "admin"]
        if not admins:
            raise ChromactlError("no server-wide admin of this project has a token to act with",
                                 hint="add one: `chromactl creds add NAME --role admin`")
        chosen = next((u for u in admins if u.name == "admin"), admins[0])
        return AdminCredential(chosen.name, chosen.tokens[0])
    given = password()
    if given is not None:
        return AdminCredential(user or "admin", given)
    if user is not None:
        raise UsageError("--user goes with --password-stdin")
    name, sep, secret = (from_environment or "").partition(":")
    if not sep or not name:
        raise UsageError("basic auth: chromactl keeps only password hashes; give an admin's password with "
                         "--password-stdin (and --user NAME, default admin) or CHROMA_CLIENT_AUTH_CREDENTIALS="
                         "USER:PASSWORD")
    return AdminCredential(name, secret)


class _Api:
    """Chroma's tenant and database routes, asked as the admin; answers that are not what
    the route promises become one ChromactlError each."""

    def __init__(self, project: Project, admin: AdminCredential, engine_address: str | None):
        settings = project.settings
        tls = read_tls(project)
        if settings.uses_tls and tls is None:
            raise ChromactlError("this project serves TLS, but has no certificate yet", hint="run `chromactl up`")
        self.target: Endpoint = endpoint(settings.host, settings.port, tls, engine_address)
        self.admin = admin
        self._headers = {"Content-Type": "application/json"}
        if admin.secret is not None:
            self._headers.update(credential_headers(settings, admin.user or "", admin.secret))

    def _send(self, method: str, path: str, body: dict | None = None) -> tuple[int, bytes]:
        try:
            return request(self.target, method, path, self._headers,
                           json.dumps(body).encode() if body is not None else None, timeout=TIMEOUT)
        except ssl.SSLCertVerificationError as exc:
            raise ChromactlError(f"the server at {self.target.url} presents a certificate the project's CA does "
                                 f"not verify: {exc.verify_message or exc}", hint="`chromactl doctor` tells why",
                                 exit_code=EXIT_NOT_HEALTHY) from None
        except (OSError, http.client.HTTPException) as exc:
            raise ChromactlError(f"the server at {self.target.url} does not answer ({exc or type(exc).__name__})",
                                 hint="start it with `chromactl up`; `chromactl doctor` tells why",
                                 exit_code=EXIT_NOT_HEALTHY) from None

    def _refused(self, status: int, body: bytes, method: str, path: str) -> ChromactlError:
        who = f"{self.admin.user!r}" if self.admin.user else "an anonymous caller"
        if status == 401:
            return ChromactlError(f"the server did not accept the credential of {who} (HTTP 401)",
                                  hint="check it with `chromactl doctor`; a change to the files not yet on the "
                                       "server needs `chromactl up`")
        if status == 403:
            return ChromactlError(f"the server refused {method} {path} to {who} (HTTP 403)",
                                  hint="act as a server-wide admin (README: Roles)")
        if status == 404 and method == "POST":
            return ChromactlError(f"this server has no route {path} (HTTP 404)",
                                  hint="tenants need Chroma 0.6 or later")
        try:
            said = json.loads(body).get("message")
        except (ValueError, AttributeError):
            said = None
        return ChromactlError(f"Chroma answered HTTP {status} to {method} {path}" + (f": {said}" if said else ""))

    def create(self, path: str, name: str, what: str) -> Outcome:
        """POST {name} to a collection route: created, or (409) already there."""
        status, body = self._send("POST", path, {"name": name})
        if status == 200:
            return Outcome.CREATED
        if status == 409:
            return Outcome.EXISTED
        raise self._refused(status, body, "POST", path)

    def exists(self, path: str) -> bool:
        status, body = self._send("GET", path)
        if status in (200, 404):
            return status == 200
        raise self._refused(status, body, "GET", path)

    def database_names(self, tenant: str) -> tuple[str, ...]:
        path = f"{V2}/tenants/{_segment(tenant)}/databases"
        status, body = self._send("GET", path)
        if status != 200:
            raise self._refused(status, body, "GET", path)
        try:
            return tuple(sorted(str(d["name"]) for d in json.loads(body)))
        except (ValueError, TypeError, KeyError):
            raise ChromactlError(f"Chroma answered GET {path} with something that is not a list of databases") \
                from None
