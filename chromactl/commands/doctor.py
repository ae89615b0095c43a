"""`chromactl doctor`: what a client meets when it talks to the project's server, told apart.

From the client's side, one request of each kind, in the order a client meets them: the
port, TLS (the CA and the name), the heartbeat, a request without credentials (strangers
must be refused), the credential (its identity request), and the actions a client needs
(connecting, and the one asked about). The project's own files say what the answers mean:
whose secret it is (a token in authz.yaml, a password checked against server.htpasswd's
hash), which role that user has, which CA signs the certificate. The gateway adds one fact
no file holds: a refusal carries `X-Chromactl-Refused: role` when the caller authenticated
and its role lacks the action (strangers never see it). No engine is asked.

Outcomes are typed (Finding: a Check, a Verdict, a Diagnosis and the facts); chromactl.output
phrases them and says the fix."""

from __future__ import annotations

import http.client
import socket
import ssl
import uuid
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

from chromactl.certs import TLS_DIR
from chromactl.credentials import PROBE_USER, User, password_matches
from chromactl.errors import ChromactlError, UsageError
from chromactl.gateway import REFUSED_HEADER
from chromactl.probe import PROTECTED, USER_AGENT, V1, V2, credential_headers, served_certificate
from chromactl.project import Project, load_project
from chromactl.roles import ACTIONS, PROBE_ROLE
from chromactl.routes import ROUTES
from chromactl.settings import is_loopback
from chromactl.spec import url_for
from chromactl.tls import cert_info, permits, permitted_names

DEFAULT_ACTION = "db:list_collections"  # what the line appended to a printed snippet does
CONNECT_ACTIONS = ("tenant:get_tenant", "db:get_database")  # what Chroma's clients ask when they connect
# No request for it is harmless: were it allowed, it would act.
UNCHECKABLE = ("system:reset",)
CHECKABLE_ACTIONS = tuple(a for a in ACTIONS if a not in UNCHECKABLE)
TIMEOUT = 5.0


class Check(str, Enum):
    PORT = "port"
    TLS = "tls"
    HEARTBEAT = "heartbeat"
    STRANGERS = "strangers"
    CREDENTIAL = "credential"
    ACTION = "action"


class Verdict(str, Enum):
    OK = "ok"
    WARNING = "warning"  # works, but worth knowing (e.g. auth none on loopback)
    FAILED = "failed"
    SKIPPED = "skipped"  # an earlier check failed, or it does not apply


class Diagnosis(str, Enum):
    PORT_NOT_REACHABLE = "port_not_reachable"
    TLS_CA_NOT_TRUSTED = "tls_ca_not_trusted"
    TLS_NAME_NOT_IN_CERTIFICATE = "tls_name_not_in_certificate"
    TLS_CERTIFICATE_EXPIRED = "tls_certificate_expired"
    TLS_FAILED = "tls_failed"
    TLS_EXPECTED = "tls_expected"  # http:// to a port that speaks TLS
    NO_TLS = "no_tls"  # https:// to a port that does not
    NOT_ANSWERING = "not_answering"
    OPEN_TO_STRANGERS = "open_to_strangers"
    NO_CREDENTIAL = "no_credential"
    WRONG_SECRET = "wrong_secret"
    NOT_APPLIED = "credential_not_applied"  # in the files, not yet on the running server
    REVOCATION_PENDING = "revocation_pending"  # on the running server, no longer in the files
    ROLE_LACKS_ACTION = "role_lacks_action"
    REFUSED = "refused"  # refused for a reason the files do not give


class Skip(str, Enum):
    """Why a check did not run."""

    EARLIER = "earlier"  # an earlier check failed
    NO_AUTH = "no_auth"  # auth none: no credential to check
    NO_TLS = "no_tls"  # plain http: no certificate to check


class Source(str, Enum):
    """Where the credential checked came from."""

    ENVIRONMENT = "environment"  # CHROMA_CLIENT_AUTH_CREDENTIALS, as the printed snippets read it
    STDIN = "stdin"
    PROBE = "probe"  # chromactl's probe user, from .chromactl/probe-secret


@dataclass(frozen=True)
class Finding:
    check: Check
    verdict: Verdict
    diagnosis: Diagnosis | None = None
    status: int | None = None  # the HTTP status the request got
    detail: str | None = None  # the TLS library's words, say
    action: str | None = None  # the action an ACTION finding is about
    skip: Skip | None = None
    told_by_server: bool = False  # the gateway's refusal said why (X-Chromactl-Refused)
    malformed: bool = False  # WRONG_SECRET: not even the credential's form (USER:PASSWORD)
    known_user: bool = False  # WRONG_SECRET under basic auth: the user exists, the password is not its


@dataclass(frozen=True)
class DoctorResult:
    project: Path
    url: str  # what was checked
    host: str
    port: int
    tls: bool
    ca: str | None  # the CA the check trusted (https)
    project_ca: str | None  # the CA the project's clients are told to trust
    tls_mode: str
    published: str  # host:port the project publishes its server on (chromactl.yaml)
    published_on_loopback: bool
    auth: str
    token_header: str | None
    rbac: bool
    source: Source | None  # None: auth none
    user: str | None  # whose credential it is, by the project's files (basic: the user it names)
    role: str | None
    role_actions: tuple[str, ...]
    roles_with_action: dict[str, tuple[str, ...]]  # action -> the roles that have it
    action: str
    certificate_names: tuple[str, ...]  # what the served certificate names (https, when seen)
    findings: tuple[Finding, ...]
    ca_may_sign: tuple[str, ...] | None = None  # tls auto: the names the project's CA is constrained to
    ca_permits_host: bool = True  # whether the project's CA may sign for the host the client used

    @property
    def healthy(self) -> bool:
        return all(f.verdict is not Verdict.FAILED for f in self.findings)


@dataclass(frozen=True)
class _Target:
    scheme: str
    host: str
    port: int
    ca: str | None

    @property
    def tls(self) -> bool:
        return self.scheme == "https"

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    def context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.ca)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        return context


def doctor(root: Path, *, url: str | None = None, ca: str | None = None, from_environment: str | None = None,
           stdin_flag: str | None = None, read_stdin: Callable[[], str] | None = None, user: str | None = None,
           action: str = DEFAULT_ACTION, engine_address: str | None = None) -> DoctorResult:
    """Check the project's server as a client would. The credential checked: what stdin holds
    (with `stdin_flag`: --token-stdin, or --password-stdin and `user`), else the value of
    CHROMA_CLIENT_AUTH_CREDENTIALS (`from_environment`: a token, or USER:PASSWORD), else
    chromactl's probe user. `engine_address` (where the engine is, not asked): a remote
    engine's server is reached through its host."""
    project = load_project(root)
    settings = project.settings
    if action in UNCHECKABLE:
        raise UsageError(f"--action {action}: no request for it is harmless (were it allowed, it would act), so "
                         "doctor does not send one")
    if action not in ACTIONS:
        raise UsageError(f"--action: unknown action {action!r}")
    source, name, secret, malformed = _credential(project, from_environment, stdin_flag, read_stdin, user)
    project_ca = _project_ca(project)
    target = _target(project, url, ca if ca is not None else project_ca, engine_address)
    known = _identify(project, name, secret) if secret else None
    roles = project.credentials.roles or {}
    role = known.role if known else None
    checked = tuple(dict.fromkeys((*CONNECT_ACTIONS, action)))

    findings: list[Finding] = []
    names: tuple[str, ...] = ()
    api = None
    port_ok = _port_open(target)
    findings.append(Finding(Check.PORT, Verdict.OK) if port_ok else
                    Finding(Check.PORT, Verdict.FAILED, Diagnosis.PORT_NOT_REACHABLE))
    if port_ok:
        if target.tls:
            tls_finding = _check_tls(target)
            names = _served_names(target)
            findings.append(tls_finding)
            ready = tls_finding.verdict is Verdict.OK
        else:
            ready = True
        if ready:
            beat, api = _heartbeat(target)
            findings.append(beat)
            ready = beat.verdict is Verdict.OK
        if ready:
            findings.append(_strangers(target, api, settings.auth, is_loopback(settings.host)))
            if settings.auth_enabled:
                accepted = _check_credential(findings, project, target, source, name, secret, malformed, known)
                if accepted:
                    findings += [_check_action(project, target, a, known, headers=_headers(project, name, secret))
                                 for a in checked]
    done = {f.check for f in findings}
    for check in Check:
        if check in done:
            continue
        if check is Check.TLS and not target.tls:
            continue  # plain http: nothing to check, nothing to say
        if check in (Check.CREDENTIAL, Check.ACTION) and not settings.auth_enabled:
            findings.append(Finding(check, Verdict.SKIPPED, skip=Skip.NO_AUTH))
        else:
            findings.append(Finding(check, Verdict.SKIPPED, skip=Skip.EARLIER))
    order = list(Check)
    findings.sort(key=lambda f: order.index(f.check))
    return DoctorResult(
        project=project.root, url=target.url, host=target.host, port=target.port, tls=target.tls,
        ca=target.ca if target.tls else None, project_ca=project_ca, tls_mode=settings.tls,
        published=f"{settings.host}:{settings.port}", published_on_loopback=is_loopback(settings.host),
        auth=settings.auth, token_header=settings.token_header if settings.auth == "token" else None,
        rbac=settings.rbac, source=source if settings.auth_enabled else None,
        user=known.name if known else name, role=role,
        role_actions=tuple(roles.get(role, ())) if role else (),
        roles_with_action={a: tuple(r for r, granted in roles.items() if a in granted and r != PROBE_ROLE)
                           for a in checked},
        action=action, certificate_names=names, findings=tuple(findings),
        **_ca_constraints(project, project_ca, target.host))


# --- what is checked, and with what ------------------------------------------------------------


def _credential(project: Project, from_environment: str | None, stdin_flag: str | None,
                read_stdin: Callable[[], str] | None,
                user: str | None) -> tuple[Source, str | None, str | None, bool]:
    """(where it came from, the user it names (basic), the secret, whether its form is wrong)."""
    auth = project.settings.auth
    if stdin_flag is not None:
        if auth == "none":
            raise UsageError(f"{stdin_flag}: this project has auth none, there is no credential to check")
        if auth == "token" and stdin_flag != "--token-stdin":
            raise UsageError(f"{stdin_flag} is for basic auth; this project uses tokens (use --token-stdin)")
        if auth == "basic" and stdin_flag != "--password-stdin":
            raise UsageError(f"{stdin_flag} is for token auth; this project uses basic auth (use --password-stdin "
                             "and --user NAME)")
        if auth == "basic" and user is None:
            raise UsageError("--password-stdin checks a user's password: name the user with --user NAME")
        if auth == "token" and user is not None:
            raise UsageError("--user is for basic auth; this project uses tokens (a token names its user)")
        return Source.STDIN, user, read_stdin(), False
    if user is not None:
        raise UsageError("--user goes with --password-stdin")
    if from_environment is None:
        return Source.PROBE, PROBE_USER, project.probe_secret, False
    if auth != "basic":
        return Source.ENVIRONMENT, None, from_environment, False
    name, sep, password = from_environment.partition(":")
    return Source.ENVIRONMENT, name or None, password if sep else from_environment, bool(from_environment) and not sep


def _ca_constraints(project: Project, project_ca: str | None, host: str) -> dict:
    """tls auto: the names the project's CA may sign for, and whether the host is one."""
    if project.settings.tls != "auto" or project_ca is None:
        return {}
    try:
        may_sign = permitted_names(Path(project_ca).read_text())
    except (OSError, ValueError):
        return {}
    return {"ca_may_sign": may_sign, "ca_permits_host": permits(may_sign, host)}


def _project_ca(project: Project) -> str | None:
    settings = project.settings
    if not settings.uses_tls:
        return None
    path = project.root / (settings.tls_ca if settings.tls == "files" else f"{TLS_DIR}/ca.pem")
    return str(path.absolute())


def _target(project: Project, url: str | None, ca: str | None, engine_address: str | None) -> _Target:
    settings = project.settings
    if url is None:
        url = url_for(settings.host, settings.port, "https" if settings.uses_tls else "http", engine_address)
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = -1
    if parts.scheme not in ("http", "https") or not parts.hostname or port == -1:
        raise UsageError(f"--url: {url!r} is not an address a client uses: give http(s)://HOST:PORT")
    if ca is not None and parts.scheme == "https":
        try:
            ssl.create_default_context(cafile=ca)
        except (OSError, ssl.SSLError) as exc:
            raise UsageError(f"--ca: cannot read a CA certificate from {ca}: {exc}") from None
    return _Target(parts.scheme, parts.hostname, port or settings.port, ca)


def _identify(project: Project, name: str | None, secret: str) -> User | None:
    """Whose secret it is, by the project's files: a token of authz.yaml, or the named user's
    password checked against its hash in server.htpasswd."""
    credentials = project.credentials
    if project.settings.auth == "token":
        return next((u for u in credentials.users if secret in u.tokens), None)
    user = credentials.get(name) if name else None
    return user if user is not None and password_matches(secret, user.password_hash) else None


def _headers(project: Project, name: str | None, secret: str | None) -> dict[str, str]:
    return credential_headers(project.settings, name or "", secret or "")


def _send(target: _Target, method: str, path: str, headers: dict[str, str] | None = None,
          body: bytes | None = None) -> tuple[int, str | None]:
    """(status, the refusal's reason header or None)."""
    if target.tls:
        connection: http.client.HTTPConnection = http.client.HTTPSConnection(
            target.host, target.port, timeout=TIMEOUT, context=target.context())
    else:
        connection = http.client.HTTPConnection(target.host, target.port, timeout=TIMEOUT)
    try:
        connection.request(method, path, body=body, headers={"User-Agent": USER_AGENT, **(headers or {})})
        response = connection.getresponse()
        response.read()
        return response.status, response.getheader(REFUSED_HEADER)
    finally:
        connection.close()


def _port_open(target: _Target) -> bool:
    try:
        with socket.create_connection((target.host, target.port), timeout=TIMEOUT):
            return True
    except OSError:
        return False


# OpenSSL's verify codes (X509_V_ERR_*).
_UNTRUSTED = {2, 18, 19, 20, 21}  # no issuer known, self-signed, or a root nobody here trusts
_NAME = {62, 64}  # hostname or IP address mismatch
_EXPIRED = {10}


def _check_tls(target: _Target) -> Finding:
    """The handshake a client makes: the CA it trusts, the name it connected by."""
    try:
        with socket.create_connection((target.host, target.port), timeout=TIMEOUT) as raw:
            with target.context().wrap_socket(raw, server_hostname=target.host):
                return Finding(Check.TLS, Verdict.OK)
    except ssl.SSLCertVerificationError as exc:
        detail = exc.verify_message or str(exc)
        code = exc.verify_code
        diagnosis = (Diagnosis.TLS_NAME_NOT_IN_CERTIFICATE if code in _NAME else
                     Diagnosis.TLS_CA_NOT_TRUSTED if code in _UNTRUSTED else
                     Diagnosis.TLS_CERTIFICATE_EXPIRED if code in _EXPIRED else Diagnosis.TLS_FAILED)
        return Finding(Check.TLS, Verdict.FAILED, diagnosis, detail=detail)
    except ssl.SSLError as exc:
        plain = any(word in str(exc) for word in ("WRONG_VERSION_NUMBER", "wrong version number", "record layer",
                                                  "packet length too long", "http request"))
        return Finding(Check.TLS, Verdict.FAILED, Diagnosis.NO_TLS if plain else Diagnosis.TLS_FAILED,
                       detail=exc.reason or str(exc))
    except OSError as exc:
        return Finding(Check.TLS, Verdict.FAILED, Diagnosis.TLS_FAILED, detail=str(exc) or type(exc).__name__)


def _served_names(target: _Target) -> tuple[str, ...]:
    pem = served_certificate(target.host, target.port)
    if pem is None:
        return ()
    try:
        return cert_info(pem).names
    except ChromactlError:
        return ()


def _heartbeat(target: _Target) -> tuple[Finding, str | None]:
    status = None
    for api in (V2, V1):
        try:
            status, _ = _send(target, "GET", api + "/heartbeat")
        except (OSError, http.client.HTTPException):
            status = None
            break
        if status == 200:
            return Finding(Check.HEARTBEAT, Verdict.OK, status=status), api
        if status not in (404, 410):
            break
    if not target.tls and served_certificate(target.host, target.port) is not None:
        return Finding(Check.TLS, Verdict.FAILED, Diagnosis.TLS_EXPECTED, status=status), None
    return Finding(Check.HEARTBEAT, Verdict.FAILED, Diagnosis.NOT_ANSWERING, status=status), None


def _strangers(target: _Target, api: str, auth: str, loopback: bool) -> Finding:
    try:
        status, _ = _send(target, "GET", PROTECTED[api])
    except (OSError, http.client.HTTPException) as exc:
        return Finding(Check.STRANGERS, Verdict.FAILED, Diagnosis.NOT_ANSWERING, detail=str(exc))
    if status in (401, 403):
        return Finding(Check.STRANGERS, Verdict.OK, status=status)
    if 200 <= status < 300:
        # Chosen (auth none) and only this machine can reach it: worth a warning, no more.
        verdict = Verdict.WARNING if auth == "none" and loopback else Verdict.FAILED
        return Finding(Check.STRANGERS, verdict, Diagnosis.OPEN_TO_STRANGERS, status=status)
    return Finding(Check.STRANGERS, Verdict.WARNING, Diagnosis.REFUSED, status=status)


def _check_credential(findings: list[Finding], project: Project, target: _Target, source: Source,
                      name: str | None, secret: str | None, malformed: bool, known: User | None) -> bool:
    """The credential's identity request; whether the server accepted it."""
    if not secret:
        findings.append(Finding(Check.CREDENTIAL, Verdict.FAILED, Diagnosis.NO_CREDENTIAL))
        return False
    try:
        status, _ = _send(target, "GET", V2 + "/auth/identity", _headers(project, name, secret))
    except ValueError:  # a value no HTTP header can carry (a line break, say)
        findings.append(Finding(Check.CREDENTIAL, Verdict.FAILED, Diagnosis.WRONG_SECRET, malformed=True))
        return False
    except (OSError, http.client.HTTPException) as exc:
        findings.append(Finding(Check.CREDENTIAL, Verdict.FAILED, Diagnosis.NOT_ANSWERING, detail=str(exc)))
        return False
    accepted = status not in (401, 403)
    if accepted and known is not None:
        findings.append(Finding(Check.CREDENTIAL, Verdict.OK, status=status))
    elif accepted:
        findings.append(Finding(Check.CREDENTIAL, Verdict.FAILED, Diagnosis.REVOCATION_PENDING, status=status))
    elif known is not None:
        findings.append(Finding(Check.CREDENTIAL, Verdict.FAILED, Diagnosis.NOT_APPLIED, status=status))
    else:
        named = project.settings.auth == "basic" and name is not None and project.credentials.get(name) is not None
        findings.append(Finding(Check.CREDENTIAL, Verdict.FAILED, Diagnosis.WRONG_SECRET, status=status,
                                malformed=malformed, known_user=named))
    return accepted


def action_request(action: str) -> tuple[str, str, bytes | None]:
    """(method, path, body) of a request the action allows and that changes nothing: reads of
    the default tenant and database, and everything else aimed at names that do not exist,
    with a body Chroma refuses ({}), so that only the gateway's decision tells."""
    method, template = next((m, t) for m, t, allowed_by in ROUTES if action in allowed_by)
    missing = f"chromactl-doctor-{uuid.uuid4()}"
    real = method == "GET"  # reads of what every server has; a write or delete only where nothing is
    values = {"tenant": "default_tenant" if real else missing, "database": "default_database" if real else missing,
              "collection_id": missing, "crn": f"default_tenant:default_database:{missing}"}
    path = "/".join(values[p[1:-1]] if p.startswith("{") else p for p in template.split("/"))
    return method, path, (b"{}" if method in ("POST", "PUT") else None)


def _check_action(project: Project, target: _Target, action: str, known: User | None,
                  headers: dict[str, str]) -> Finding:
    settings = project.settings
    role = known.role if known else None
    lacks = settings.rbac and (role is None or action not in (project.credentials.roles or {}).get(role, ()))
    method, path, body = action_request(action)
    if not settings.uses_gateway and method != "GET":
        # Natively Chroma checks the body before the role: only a request it would carry out
        # reaches the decision. The files decide instead.
        return Finding(Check.ACTION, Verdict.FAILED if lacks else Verdict.OK,
                       Diagnosis.ROLE_LACKS_ACTION if lacks else None, action=action)
    if body is not None:
        headers = {**headers, "Content-Type": "application/json"}
    try:
        status, reason = _send(target, method, path, headers, body)
    except (OSError, http.client.HTTPException) as exc:
        return Finding(Check.ACTION, Verdict.FAILED, Diagnosis.NOT_ANSWERING, detail=str(exc), action=action)
    if status not in (401, 403):
        return Finding(Check.ACTION, Verdict.OK, status=status, action=action)
    if reason == "role" or (not settings.uses_gateway and lacks):
        return Finding(Check.ACTION, Verdict.FAILED, Diagnosis.ROLE_LACKS_ACTION, status=status, action=action,
                       told_by_server=reason == "role")
    return Finding(Check.ACTION, Verdict.FAILED, Diagnosis.REFUSED, status=status, action=action)
