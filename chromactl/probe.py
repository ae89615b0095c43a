"""HTTP probes of a running Chroma server: is it up, which version, is auth enforced.

A heartbeat proves nothing about auth (it is public even with auth on), so the auth
probe asks a protected route twice: without credentials (must be refused) and with the
probe user's (must succeed)."""

from __future__ import annotations

import base64
import http.client
import json
import socket
import ssl
import time
from dataclasses import dataclass
from typing import Callable, Protocol, Union
from urllib.parse import urlsplit

from chromactl import __version__
from chromactl.credentials import PROBE_USER
from chromactl.settings import Settings

V2 = "/api/v2"
USER_AGENT_PREFIX = "chromactl/"
USER_AGENT = USER_AGENT_PREFIX + __version__
V1 = "/api/v1"
PROTECTED = {
    V2: V2 + "/tenants/default_tenant/databases/default_database/collections",
    V1: V1 + "/collections?tenant=default_tenant&database=default_database",
}
# What chromactl's probe user tries and must be refused under RBAC (its role may only list
# collection names): creating a collection. Should it be let in, the collection is removed.
RBAC_PROBE_COLLECTION = "chromactl-rbac-probe"
_DELETE_PROBE_COLLECTION = {
    V2: V2 + f"/tenants/default_tenant/databases/default_database/collections/{RBAC_PROBE_COLLECTION}",
    V1: V1 + f"/collections/{RBAC_PROBE_COLLECTION}?tenant=default_tenant&database=default_database",
}


@dataclass(frozen=True)
class Endpoint:
    """Where a server answers, and for https how to trust it: the project's CA, and the name
    its certificate must carry when that is not the URL's host."""

    url: str
    cafile: str | None = None
    server_name: str | None = None

    @property
    def tls(self) -> bool:
        return self.url.startswith("https://")


Target = Union[Endpoint, str]


class _VerifiedHTTPS(http.client.HTTPSConnection):
    """HTTPS that checks the certificate against one CA and an expected name, which may
    differ from the address connected to (a server on 0.0.0.0 reached on 127.0.0.1)."""

    def __init__(self, host: str, port: int, endpoint: Endpoint, timeout: float):
        context = ssl.create_default_context(cafile=endpoint.cafile)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        super().__init__(host, port, timeout=timeout, context=context)
        self._server_name = endpoint.server_name or host

    def connect(self) -> None:
        http.client.HTTPConnection.connect(self)
        self.sock = self._context.wrap_socket(self.sock, server_hostname=self._server_name)


def _endpoint(target: Target) -> Endpoint:
    return target if isinstance(target, Endpoint) else Endpoint(target)


def _get(target: Target, path: str, headers: dict[str, str] | None = None, timeout: float = 3.0) -> tuple[int, bytes]:
    return request(target, "GET", path, headers, timeout=timeout)


def request(target: Target, method: str, path: str, headers: dict[str, str] | None = None,
            body: bytes | None = None, timeout: float = 3.0) -> tuple[int, bytes]:
    """One request over plain HTTP or verified HTTPS: (status, body). It names chromactl as
    its User-Agent, which the audit trail records: `status` leaves chromactl's own requests
    out of its rates."""
    headers = {"User-Agent": USER_AGENT, **(headers or {})}
    endpoint = _endpoint(target)
    parts = urlsplit(endpoint.url)
    if endpoint.tls:
        connection: http.client.HTTPConnection = _VerifiedHTTPS(parts.hostname, parts.port, endpoint, timeout)
    else:
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def port_open(host: str, port: int, timeout: float = 1.0) -> bool:
    """Whether a TCP connection to host:port is accepted."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def http_status(url: Target, path: str) -> int | None:
    """The status a GET of the path gets, or None without an answer."""
    try:
        return _get(url, path)[0]
    except (OSError, http.client.HTTPException):
        return None


def served_certificate(host: str, port: int, timeout: float = 3.0) -> str | None:
    """The PEM certificate a TLS server presents (looked at, not verified), or None."""
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw:
            with context.wrap_socket(raw, server_hostname="localhost") as tls:
                return ssl.DER_cert_to_PEM_cert(tls.getpeercert(binary_form=True))
    except (OSError, ssl.SSLError):
        return None


@dataclass(frozen=True)
class Heartbeat:
    ok: bool
    latency_ms: float | None = None
    api: str | None = None  # "/api/v2" or "/api/v1"
    tls_error: str | None = None  # the server answered TLS with a certificate that does not verify


def heartbeat(url: Target, timeout: float = 3.0) -> Heartbeat:
    for api, path in ((V2, V2 + "/heartbeat"), (V1, V1 + "/heartbeat")):
        started = time.perf_counter()
        try:
            status, _ = _get(url, path, timeout=timeout)
        except ssl.SSLCertVerificationError as exc:
            return Heartbeat(False, tls_error=exc.verify_message or str(exc))
        except (OSError, http.client.HTTPException):
            return Heartbeat(False)
        if status == 200:
            return Heartbeat(True, round((time.perf_counter() - started) * 1000, 1), api)
        if status not in (404, 410):
            return Heartbeat(False)
    return Heartbeat(False)


def server_version(url: Target, api: str) -> str | None:
    try:
        status, body = _get(url, api + "/version")
        return str(json.loads(body)) if status == 200 else None
    except (OSError, ValueError, http.client.HTTPException):
        return None


def credential_headers(settings: Settings, user: str, secret: str) -> dict[str, str]:
    if settings.auth == "basic":
        return {"Authorization": "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()}
    if settings.token_header == "X-Chroma-Token":
        return {"X-Chroma-Token": secret}
    return {"Authorization": f"Bearer {secret}"}


@dataclass(frozen=True)
class AuthProbe:
    anonymous_status: int | None  # what a request without credentials got
    credential_status: int | None = None  # what the probe user's request got; None: not tried
    write_status: int | None = None  # what the probe user's write (beyond its role) got; None: not tried

    @property
    def enforced(self) -> bool:
        return self.anonymous_status in (401, 403)

    @property
    def accepted(self) -> bool:
        return self.credential_status == 200

    @property
    def roles_enforced(self) -> bool | None:
        """Whether a write beyond the probe user's role was refused (None: not tried)."""
        return None if self.write_status is None else self.write_status in (401, 403)


def probe_auth(url: Target, api: str, settings: Settings | None, probe_secret: str | None) -> AuthProbe:
    path = PROTECTED[api]

    def status_of(headers: dict[str, str]) -> int | None:
        try:
            return _get(url, path, headers)[0]
        except (OSError, http.client.HTTPException):
            return None

    anonymous = status_of({})
    with_credential = write = None
    if settings is not None and settings.auth_enabled and probe_secret:
        headers = credential_headers(settings, PROBE_USER, probe_secret)
        with_credential = status_of(headers)
        if settings.rbac:
            write = _write_beyond_role(url, api, headers)
    return AuthProbe(anonymous, with_credential, write)


def _write_beyond_role(url: Target, api: str, headers: dict[str, str]) -> int | None:
    """The probe user creates a collection, which its role does not allow: the status it got
    (a server that let it in has the collection removed again, by the same user)."""
    body = json.dumps({"name": RBAC_PROBE_COLLECTION, "get_or_create": True}).encode()
    try:
        status, _ = request(url, "POST", PROTECTED[api], {**headers, "Content-Type": "application/json"}, body)
    except (OSError, http.client.HTTPException):
        return None
    if status == 200:
        try:
            request(url, "DELETE", _DELETE_PROBE_COLLECTION[api], headers)
        except (OSError, http.client.HTTPException):
            pass
    return status


def wait_for_heartbeat(url: Target, timeout: float, still_running: Callable[[], bool]) -> Heartbeat | None:
    """Poll with a short backoff until the heartbeat answers (its Heartbeat), the
    container stops (None), or the time runs out (a failed Heartbeat)."""
    deadline = time.monotonic() + timeout
    # Short and capped: a refused connection on loopback costs well under a millisecond,
    # and every poll skipped is latency added to `up`.
    delay = 0.02
    checks = 0
    while True:
        beat = heartbeat(url, timeout=2.0)
        if beat.ok or beat.tls_error:
            return beat
        checks += 1
        if checks % 10 == 0 and not still_running():
            return None
        if time.monotonic() + delay > deadline:
            return beat if still_running() else None
        time.sleep(delay)
        delay = min(delay * 1.5, 0.1)


class Prober(Protocol):
    """The HTTP side of proving a deployment, as one object, so that the decisions built
    on it can be tested with a stand-in (tests/fake_engine.py)."""

    def wait_for_heartbeat(self, url: Target, timeout: float,
                           still_running: Callable[[], bool]) -> Heartbeat | None: ...
    def server_version(self, url: Target, api: str) -> str | None: ...
    def port_open(self, host: str, port: int) -> bool: ...
    def probe_auth(self, url: Target, api: str, settings: Settings | None,
                   probe_secret: str | None) -> AuthProbe: ...


class _HttpProber:
    """The real thing: this module's functions, over the network."""

    wait_for_heartbeat = staticmethod(wait_for_heartbeat)
    server_version = staticmethod(server_version)
    port_open = staticmethod(port_open)
    probe_auth = staticmethod(probe_auth)


HTTP_PROBER: Prober = _HttpProber()
