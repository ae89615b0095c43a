"""Users, passwords, tokens and roles, and the credential files Chroma reads.

Pure: text in, text out. Which files exist depends on the auth mode:
  token          authz.yaml       users with their tokens (and roles, with RBAC)
  basic          server.htpasswd  user:bcrypt-hash lines
  basic + RBAC   server.htpasswd, and authz.yaml for the roles
Error messages never contain a secret.
"""

from __future__ import annotations

import base64
import difflib
import hashlib
import re
import secrets
import string
from dataclasses import dataclass, replace
from typing import Any

import bcrypt
import yaml

from chromactl import roles as rolemod
from chromactl.errors import ChromactlError, ProjectFileError, UsageError
from chromactl.settings import Settings
from chromactl.yamlfile import Mapping, Sequence, load_yaml, require_mapping

HTPASSWD_FILE = "server.htpasswd"
AUTHZ_FILE = "authz.yaml"
PROBE_USER = "chromactl-probe"

TOKEN_LENGTH = 40
PASSWORD_LENGTH = 24
MIN_TOKEN_LENGTH = 16
MAX_PASSWORD_BYTES = 72  # bcrypt ignores (and bcrypt>=5 refuses) anything longer
MIN_PASSWORD_LENGTH = 16  # for chosen passwords; generated ones have PASSWORD_LENGTH

_ALPHANUMERIC = string.ascii_letters + string.digits
# What Chroma's token provider accepts: ASCII letters, digits and punctuation.
_TOKEN_CHARS = frozenset(_ALPHANUMERIC + string.punctuation)
_USERNAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
_BCRYPT_RE = re.compile(r"\$2[aby]\$(\d\d)\$[./A-Za-z0-9]{53}")
_SSHA_RE = re.compile(r"\{SSHA\}[A-Za-z0-9+/]{38}==?|\{SSHA\}[A-Za-z0-9+/]{40}")
SSHA_SALT_BYTES = 8


@dataclass(frozen=True)
class User:
    name: str
    role: str | None = None  # None when RBAC is off: every user has full access
    password_hash: str | None = None  # basic auth
    tokens: tuple[str, ...] = ()  # token auth
    # A user scoped to one tenant (None: server-wide, as every user was before scoping), and to
    # some of its databases (empty: all of them, present and future). Only the gateway enforces it.
    tenant: str | None = None
    databases: tuple[str, ...] = ()

    @property
    def internal(self) -> bool:
        return self.name == PROBE_USER

    @property
    def scoped(self) -> bool:
        return self.tenant is not None


@dataclass(frozen=True)
class Credentials:
    users: tuple[User, ...] = ()
    roles: dict[str, tuple[str, ...]] | None = None  # roles_mapping; None without RBAC

    def get(self, name: str) -> User | None:
        return next((u for u in self.users if u.name == name), None)

    def with_user(self, user: User) -> "Credentials":
        """Add the user, or replace the one of the same name in place."""
        if self.get(user.name) is None:
            return replace(self, users=self.users + (user,))
        return replace(self, users=tuple(user if u.name == user.name else u for u in self.users))

    def without(self, name: str) -> "Credentials":
        return replace(self, users=tuple(u for u in self.users if u.name != name))


# --- secrets and names -----------------------------------------------------


def generate_token() -> str:
    """Letters and digits only: safe in env files, shells and Compose files."""
    return "".join(secrets.choice(_ALPHANUMERIC) for _ in range(TOKEN_LENGTH))


def generate_password() -> str:
    return "".join(secrets.choice(_ALPHANUMERIC) for _ in range(PASSWORD_LENGTH))


# bcrypt's cost protects weak passwords from offline cracking of a leaked file, and is paid
# again on every request, since basic auth sends the password each time. A generated password
# (24 letters and digits, 142 bits) needs no slow hash: at the lowest cost (0.9 ms here) a
# leaked line still takes ~10^30 years of a GPU's guessing. Natively (Chroma 0.6 checks bcrypt
# only) a chosen one is held to 16 characters and hashed at the project's bcrypt_rounds.
# Behind the gateway every password is hashed with salted SHA-1 (hash_password_for): a slow
# hash there costs strangers nothing to trigger and tells them which names exist (an unknown
# name costs nginx no hash at all); see the README's "Passwords".
GENERATED_ROUNDS = 4
# Above this cost each request (right or wrong password) costs more than a few ms of CPU:
# status flags such users, and the gateway limits how often one address may try them.
CHEAP_ROUNDS = 6


def hash_password(password: str, rounds: int) -> str:
    return bcrypt.hashpw(password.encode("utf-8"), bcrypt.gensalt(rounds)).decode("ascii")


def hash_generated(password: str, settings: Settings) -> str:
    """The hash of a generated password (see hash_password_for)."""
    return hash_password_for(password, settings, generated=True)


def hash_password_for(password: str, settings: Settings, *, generated: bool) -> str:
    """The hash a password gets in this project. Behind the gateway nobody but nginx reads
    the file, and nginx checks salted SHA-1 ({SSHA}) in microseconds: a wrong password then
    costs the same as an unknown name (no oracle of which names exist, no CPU for strangers
    to burn, nothing to rate-limit and so no lockout). Natively Chroma 0.6 checks bcrypt
    only: cost 4 for a generated password, bcrypt_rounds for a chosen one."""
    if settings.uses_gateway:
        salt = secrets.token_bytes(SSHA_SALT_BYTES)
        digest = hashlib.sha1(password.encode("utf-8") + salt).digest()
        return "{SSHA}" + base64.b64encode(digest + salt).decode("ascii")
    return hash_password(password, GENERATED_ROUNDS if generated else settings.bcrypt_rounds)


def password_matches(password: str, password_hash: str | None) -> bool:
    """Whether the password is the one a hash of server.htpasswd was made from (bcrypt or
    {SSHA}, as nginx and Chroma check them)."""
    if not password_hash:
        return False
    if password_hash.startswith("{SSHA}"):
        try:
            raw = base64.b64decode(password_hash[len("{SSHA}"):], validate=True)
        except ValueError:
            return False
        digest, salt = raw[:20], raw[20:]
        return secrets.compare_digest(hashlib.sha1(password.encode("utf-8") + salt).digest(), digest)
    if _BCRYPT_RE.fullmatch(password_hash):
        try:
            return bcrypt.checkpw(password.encode("utf-8")[:MAX_PASSWORD_BYTES], password_hash.encode("ascii"))
        except ValueError:
            return False
    return False


def hash_cost(password_hash: str | None) -> int | None:
    """The bcrypt cost of a hash, or None."""
    match = _BCRYPT_RE.fullmatch(password_hash or "")
    return int(match[1]) if match else None


def name_problem(name: str, what: str = "name") -> str | None:
    """What is wrong with a user or role name, or None. Names reach htpasswd lines, YAML
    and nginx.conf, so they are held to a few safe characters."""
    if not isinstance(name, str) or not name:
        return f"the {what} is empty" if isinstance(name, str) else f"a {what} must be a string"
    if ":" in name:
        return f"a {what} cannot contain ':'"
    if any(c.isspace() for c in name):
        return f"a {what} cannot contain whitespace"
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        return f"a {what} cannot contain control characters"
    if not _USERNAME_RE.fullmatch(name):
        return f"a {what} is 1-64 letters, digits, '.', '_', '@' or '-', starting with a letter or digit"
    return None


# Tenant and database names a scope may hold: Chroma's rule for database names (3-512 of
# [a-zA-Z0-9._-], starting and ending with a letter or digit), at most 63 long. They reach
# nginx.conf and URL paths, so nothing else (Chroma itself takes almost any tenant name).
_SCOPE_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{1,61}[A-Za-z0-9]")
ALL_DATABASES = "*"  # in authz.yaml, as Chroma writes it: every database of the tenant


def scope_name_problem(name: object, what: str) -> str | None:
    """What is wrong with a tenant or database name for a scope, or None."""
    if not isinstance(name, str) or not _SCOPE_NAME_RE.fullmatch(name):
        return (f"a {what} name is 3-63 letters, digits, '.', '_' or '-', starting and ending with a letter or "
                f"digit (got {_printable(str(name))})")
    return None


def check_scope(tenant: str | None, databases: tuple[str, ...]) -> None:
    """A scope as given on the command line: databases need their tenant; names as Chroma's."""
    if tenant is None:
        if databases:
            raise UsageError("--database needs --tenant: a database belongs to a tenant")
        return
    for name, what in [(tenant, "tenant")] + [(d, "database") for d in databases]:
        problem = scope_name_problem(name, what)
        if problem:
            raise UsageError(problem)
    if len(set(databases)) != len(databases):
        raise UsageError("a --database is named twice")


def username_problem(name: str) -> str | None:
    return name_problem(name, "user name")


def check_username(name: str) -> None:
    problem = username_problem(name)
    if problem:
        raise UsageError(f"invalid user name {_printable(name)}: {problem}")


def token_problem(token: str) -> str | None:
    if not token:
        return "the token is empty"
    if any(c not in _TOKEN_CHARS for c in token):
        return "Chroma accepts only ASCII letters, digits and punctuation in a token (no spaces)"
    if len(token) < MIN_TOKEN_LENGTH:
        return f"a token needs at least {MIN_TOKEN_LENGTH} characters"
    return None


def password_problem(password: str) -> str | None:
    if not password:
        return "the password is empty"
    if any(ord(c) < 32 or ord(c) == 127 for c in password):
        return "a password cannot contain control characters or line breaks"
    if len(password.encode("utf-8")) > MAX_PASSWORD_BYTES:
        return f"bcrypt uses at most {MAX_PASSWORD_BYTES} bytes of a password; this one is longer"
    if len(password) < MIN_PASSWORD_LENGTH:
        return (f"a password needs at least {MIN_PASSWORD_LENGTH} characters (or let chromactl generate one: "
                "leave it empty)")
    return None


def _printable(text: str) -> str:
    shown = repr(text)
    return shown if len(shown) <= 70 else shown[:67] + "..."


# --- server.htpasswd -------------------------------------------------------


def parse_htpasswd(text: str) -> list[tuple[str, str, int]]:
    """(user, hash, line) for each line; blank lines skipped, as Chroma does."""
    entries: list[tuple[str, str, int]] = []
    seen: dict[str, int] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        parts = line.split(":")
        if len(parts) != 2 or not all(parts):
            raise ProjectFileError(HTPASSWD_FILE, "expected exactly one 'user:bcrypt-hash' per line", number)
        name, hashed = parts
        problem = username_problem(name)
        if problem:
            raise ProjectFileError(HTPASSWD_FILE, problem, number)
        if not (_BCRYPT_RE.fullmatch(hashed) or _SSHA_RE.fullmatch(hashed)):
            raise ProjectFileError(HTPASSWD_FILE, f"the password of {name!r} is not a bcrypt hash (nor {{SSHA}})", number)
        if name in seen:
            raise ProjectFileError(HTPASSWD_FILE, f"user {name!r} is already on line {seen[name]}", number)
        seen[name] = number
        entries.append((name, hashed, number))
    return entries


def render_htpasswd(creds: Credentials) -> str:
    return "".join(f"{u.name}:{u.password_hash}\n" for u in creds.users)


# --- authz.yaml --------------------------------------------------------------


def _parse_roles(doc: Mapping) -> dict[str, tuple[str, ...]]:
    if "roles_mapping" not in doc:
        raise ProjectFileError(AUTHZ_FILE, "RBAC is on but there is no roles_mapping", doc.line)
    mapping = require_mapping(doc["roles_mapping"], AUTHZ_FILE, "roles_mapping", doc.line_of("roles_mapping"))
    parsed: dict[str, tuple[str, ...]] = {}
    for role, body in mapping.items():
        line = mapping.line_of(role)
        problem = name_problem(role, "role name")
        if problem:
            raise ProjectFileError(AUTHZ_FILE, f"invalid role name {_printable(str(role))}: {problem}", line)
        body = require_mapping(body, AUTHZ_FILE, f"role {role!r}", line)
        extra = [k for k in body if k != "actions"]
        if extra:
            raise ProjectFileError(AUTHZ_FILE, f"role {role!r}: unknown key {extra[0]!r}", body.line_of(extra[0]))
        actions = body.get("actions")
        if not isinstance(actions, Sequence):
            raise ProjectFileError(AUTHZ_FILE, f"role {role!r} needs a list of actions", line)
        for index, action in enumerate(actions):
            if action not in rolemod.ACTIONS:
                raise ProjectFileError(AUTHZ_FILE, f"role {role!r}: unknown action {_printable(str(action))}",
                                       actions.line_of(index), hint=actions_hint(action))
        parsed[role] = tuple(actions)
    return parsed


def actions_hint(action: object) -> str:
    """What to write instead: the nearest action, and all of them (a pip user has no source
    to look them up in)."""
    close = difflib.get_close_matches(str(action), rolemod.ACTIONS, n=1, cutoff=0.6)
    maybe = f"did you mean {close[0]!r}? " if close else ""
    return f"{maybe}Chroma's actions are {', '.join(rolemod.ACTIONS)} (README: Roles)"


def parse_authz(text: str, settings: Settings) -> tuple[dict[str, tuple[str, ...]] | None, list[tuple[User, int]]]:
    """Roles (None without RBAC) and the users of authz.yaml, each with its line."""
    doc = load_yaml(text, AUTHZ_FILE)
    doc = require_mapping(doc, AUTHZ_FILE)
    for key in doc:
        if key not in ("users", "roles_mapping"):
            raise ProjectFileError(AUTHZ_FILE, f"unknown key {key!r}", doc.line_of(key))
    roles = _parse_roles(doc) if settings.rbac else None

    users_node = doc.get("users")
    if not isinstance(users_node, Sequence):
        raise ProjectFileError(AUTHZ_FILE, "'users' must be a list", doc.line_of("users"))
    users: list[tuple[User, int]] = []
    seen: dict[str, int] = {}
    token_owner: dict[str, str] = {}
    allowed_keys = {"id", "role", "tenant", "databases"} | ({"tokens"} if settings.auth == "token" else set())
    for index, entry in enumerate(users_node):
        line = users_node.line_of(index)
        entry = require_mapping(entry, AUTHZ_FILE, "each user", line)
        for key in entry:
            if key not in allowed_keys:
                raise ProjectFileError(AUTHZ_FILE, f"unknown user key {key!r} (auth is {settings.auth})", entry.line_of(key))
        name = entry.get("id")
        problem = username_problem(name) if isinstance(name, str) else "each user needs an 'id'"
        if problem:
            raise ProjectFileError(AUTHZ_FILE, problem, entry.line_of("id"))
        if name in seen:
            raise ProjectFileError(AUTHZ_FILE, f"user {name!r} is already on line {seen[name]}", line)
        seen[name] = line

        role = None
        if settings.rbac:
            role = entry.get("role")
            if not isinstance(role, str):
                raise ProjectFileError(AUTHZ_FILE, f"user {name!r} has no role", line)
            if role not in roles:
                raise ProjectFileError(AUTHZ_FILE, f"user {name!r} has role {role!r}, which roles_mapping does not define",
                                       entry.line_of("role"))

        tokens: tuple[str, ...] = ()
        if settings.auth == "token":
            raw_tokens = entry.get("tokens")
            if not isinstance(raw_tokens, Sequence) or not raw_tokens:
                raise ProjectFileError(AUTHZ_FILE, f"user {name!r} needs a non-empty list of tokens", line)
            for t_index, token in enumerate(raw_tokens):
                t_line = raw_tokens.line_of(t_index)
                problem = token_problem(token) if isinstance(token, str) else "a token must be a string"
                if problem:
                    raise ProjectFileError(AUTHZ_FILE, f"user {name!r}: {problem}", t_line)
                if token in token_owner:
                    raise ProjectFileError(AUTHZ_FILE, f"user {name!r} shares a token with user {token_owner[token]!r}", t_line)
                token_owner[token] = name
            tokens = tuple(raw_tokens)
        tenant, databases = _parse_scope(entry, name)
        if tenant is not None and (not settings.rbac or name == PROBE_USER):
            why = "chromactl's probe user proves the server for every tenant" if name == PROBE_USER else \
                "scoping needs RBAC: the role decides what the user may do in its tenant"
            raise ProjectFileError(AUTHZ_FILE, f"user {name!r} has a tenant, but {why}", entry.line_of("tenant"))
        users.append((User(name=name, role=role, tokens=tokens, tenant=tenant, databases=databases), line))
    return roles, users


def _parse_scope(entry: Mapping, name: str) -> tuple[str | None, tuple[str, ...]]:
    """A user's tenant and databases, in Chroma's own keys (`tenant`, `databases`; `["*"]`:
    every database of the tenant)."""
    tenant = entry.get("tenant")
    raw = entry.get("databases")
    if tenant is None:
        if raw is not None:
            raise ProjectFileError(AUTHZ_FILE, f"user {name!r} has databases but no tenant", entry.line_of("databases"))
        return None, ()
    problem = scope_name_problem(tenant, "tenant")
    if problem:
        raise ProjectFileError(AUTHZ_FILE, f"user {name!r}: {problem}", entry.line_of("tenant"))
    if raw is None:
        return tenant, ()
    # The shape first: `databases: 5` is no list to compare with ["*"], and `"*"` or `{"*": 1}` are not ["*"].
    if not isinstance(raw, Sequence) or not raw:
        raise ProjectFileError(AUTHZ_FILE, f"user {name!r}: 'databases' must be a non-empty list "
                               f"(or [\"{ALL_DATABASES}\"] for all of the tenant's)", entry.line_of("databases"))
    if raw == [ALL_DATABASES]:
        return tenant, ()
    for index, database in enumerate(raw):
        problem = scope_name_problem(database, "database")
        if problem:
            raise ProjectFileError(AUTHZ_FILE, f"user {name!r}: {problem}", raw.line_of(index))
    if len(set(raw)) != len(raw):
        raise ProjectFileError(AUTHZ_FILE, f"user {name!r} names a database twice", entry.line_of("databases"))
    return tenant, tuple(raw)


def render_authz(creds: Credentials, settings: Settings) -> str:
    doc: dict[str, Any] = {}
    if settings.rbac:
        doc["roles_mapping"] = {role: {"actions": list(actions)} for role, actions in (creds.roles or {}).items()}
    users = []
    for u in creds.users:
        entry: dict[str, Any] = {"id": u.name}
        if settings.rbac:
            entry["role"] = u.role
        if settings.auth == "token":
            entry["tokens"] = list(u.tokens)
        if u.tenant is not None:
            entry["tenant"] = u.tenant
            entry["databases"] = list(u.databases) or [ALL_DATABASES]
        users.append(entry)
    doc["users"] = users
    header = (
        "# Written by chromactl. Chroma reads it for "
        + ("tokens and roles" if settings.auth == "token" and settings.rbac else
           "tokens" if settings.auth == "token" else "roles")
        + ".\n# Change it with `chromactl creds`; it holds secrets: keep it 0600 and out of version control.\n"
    )
    return header + yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, width=1000)


# --- the whole set -----------------------------------------------------------


def credential_file_names(settings: Settings) -> tuple[str, ...]:
    if settings.auth == "token":
        return (AUTHZ_FILE,)
    if settings.auth == "basic":
        return (HTPASSWD_FILE, AUTHZ_FILE) if settings.rbac else (HTPASSWD_FILE,)
    return ()


def load_credentials(settings: Settings, texts: dict[str, str | None]) -> Credentials:
    """Parse the credential files for this auth mode and check they agree."""
    for filename in credential_file_names(settings):
        if texts.get(filename) is None:
            raise ChromactlError(f"{filename} is missing (auth is {settings.auth}"
                                 f"{', RBAC on' if settings.rbac else ''})",
                                 hint="restore it, or run `chromactl init --force`")
    if settings.auth == "none":
        return Credentials()
    if settings.auth == "token":
        roles, users = parse_authz(texts[AUTHZ_FILE], settings)
        return Credentials(users=tuple(u for u, _ in users), roles=roles)

    entries = parse_htpasswd(texts[HTPASSWD_FILE])
    if not settings.uses_gateway:
        for name, hashed, line in entries:
            if not _BCRYPT_RE.fullmatch(hashed):
                raise ProjectFileError(HTPASSWD_FILE, f"the password of {name!r} is hashed for the gateway ({{SSHA}}), "
                                       "which Chroma 0.6 cannot check", line,
                                       hint=f"give it a new one: chromactl creds rotate {name}")
    if not settings.rbac:
        return Credentials(users=tuple(User(name=n, password_hash=h) for n, h, _ in entries))
    roles, authz_users = parse_authz(texts[AUTHZ_FILE], settings)
    role_of = {u.name: u.role for u, _ in authz_users}
    scope_of = {u.name: (u.tenant, u.databases) for u, _ in authz_users}
    for name, _, line in entries:
        if name not in role_of:
            raise ProjectFileError(HTPASSWD_FILE, f"user {name!r} has no role in {AUTHZ_FILE}", line)
    in_htpasswd = {name for name, _, _ in entries}
    for user, line in authz_users:
        if user.name not in in_htpasswd:
            raise ProjectFileError(AUTHZ_FILE, f"user {user.name!r} has no password in {HTPASSWD_FILE}", line)
    return Credentials(users=tuple(User(name=n, role=role_of[n], password_hash=h, tenant=scope_of[n][0],
                                        databases=scope_of[n][1]) for n, h, _ in entries), roles=roles)


def render_credential_files(creds: Credentials, settings: Settings) -> dict[str, str]:
    files: dict[str, str] = {}
    if settings.auth == "basic":
        files[HTPASSWD_FILE] = render_htpasswd(creds)
    if AUTHZ_FILE in credential_file_names(settings):
        files[AUTHZ_FILE] = render_authz(creds, settings)
    return files


def new_credentials(settings: Settings) -> Credentials:
    return Credentials(roles=dict(rolemod.BUILTIN_ROLES) if settings.rbac else None)


def credential_digests(creds: Credentials) -> frozenset[str]:
    """One digest per user of everything that grants access (name, role, tokens or password
    hash): a digest that disappears is a revocation (a user removed, a secret rotated, a
    role changed). Digests, so that the record of what a server was given holds no secret."""
    return frozenset(
        hashlib.sha256("\0".join((u.name, u.role or "", u.password_hash or "", *u.tokens)
                                 + ((f"scope:{u.tenant}", *u.databases) if u.scoped else ())).encode()).hexdigest()
        for u in creds.users)
