"""Which of Chroma's clients fit a server, and how they connect to it: domain rules, kept
with the image rules (chromactl.images), phrased into snippets that run as printed."""

from __future__ import annotations

from dataclasses import dataclass

from chromactl.envfile import BASIC_CLIENT, TOKEN_CLIENT
from chromactl.images import tag_version
from chromactl.settings import Settings

CREDENTIALS_VARIABLE = "CHROMA_CLIENT_AUTH_CREDENTIALS"


@dataclass(frozen=True)
class Connection:
    """Where a user's client connects, and as whom: what the snippets are printed from."""

    settings: Settings
    url: str
    ca: str | None = None  # the CA to trust, for https
    tenant: str | None = None  # the user's scope, if any
    databases: tuple[str, ...] = ()


def serves_0x(image: str) -> bool:
    """Whether the image is a 0.x server (today's 1.x clients cannot use it)."""
    version = tag_version(image)
    return version is not None and version < (1, 0, 0)


def fitting_clients(image: str) -> str:
    """Which Chroma clients can talk to this server: 1.x clients cannot use a 0.x server."""
    if serves_0x(image):
        return ("Chroma 0.x clients only (Python: pip install 'chromadb<0.7'; JavaScript: chromadb@1.x); "
                "today's Python 1.x client cannot use this server")
    return "current clients (Python: pip install chromadb, 1.x; JavaScript: npm install chromadb)"


def _host_port(url: str) -> tuple[str, str]:
    host, port = url.rsplit("//", 1)[1].rsplit(":", 1)
    return host.strip("[]"), port


# The database a scoped user's client names itself: none when the server's identity names
# exactly one (Chroma's Python client then adopts it), else the first of them; a user of the
# whole tenant gets the clients' default database (`chromactl tenant add` makes it).
DEFAULT_DATABASE = "default_database"


def scope_database(databases: tuple[str, ...]) -> str:
    """The database a scoped user's client starts in."""
    return databases[0] if databases else DEFAULT_DATABASE


def python_snippet(settings: Settings, url: str, ca_path: str | None, tenant: str | None = None,
                   databases: tuple[str, ...] = ()) -> str:
    """With a `tenant`, for a user scoped to it: the client asks the server who it is
    (/api/v2/auth/identity, which the gateway answers) and takes its tenant, and its database
    when there is one; with several, the first is named."""
    host, port = _host_port(url)
    ssl = ", ssl=True" if ca_path else ""
    verify = f'chroma_server_ssl_verify="{ca_path}"' if ca_path else ""
    lines = ["import os, chromadb", "from chromadb.config import Settings"]
    if not settings.auth_enabled:
        extra = f", settings=Settings({verify})" if verify else ""
        return "\n".join(lines + [f"client = chromadb.HttpClient(host={host!r}, port={port}{ssl}{extra})"])
    provider = TOKEN_CLIENT if settings.auth == "token" else BASIC_CLIENT
    named = f", database={databases[0]!r}" if tenant is not None and len(databases) > 1 else ""
    body = [f"client = chromadb.HttpClient(host={host!r}, port={port}{ssl}{named}, settings=Settings("]
    if tenant is not None:
        body.append("    chroma_overwrite_singleton_tenant_database_access_from_auth=True,")
    if verify:
        body.append(f"    {verify},")
    body.append(f'    chroma_client_auth_provider="{provider}",')
    if settings.auth == "token" and settings.token_header == "X-Chroma-Token":
        body.append(f'    chroma_client_auth_credentials=os.environ["{CREDENTIALS_VARIABLE}"],')
        body.append('    chroma_auth_token_transport_header="X-Chroma-Token"))')
    else:
        body.append(f'    chroma_client_auth_credentials=os.environ["{CREDENTIALS_VARIABLE}"]))')
    return "\n".join(lines + body)


def javascript_snippet(settings: Settings, url: str, tls: bool, tenant: str | None = None,
                       databases: tuple[str, ...] = ()) -> str:
    """The 3.x client (for Chroma 1.x) takes headers; the 1.x client (for 0.x) took `auth`.
    A scoped user's client names its tenant and database (the 3.x client asks the server only
    when neither is given, and then refuses a user of several databases)."""
    lines = ['import { ChromaClient } from "chromadb";']
    var = f"process.env.{CREDENTIALS_VARIABLE}"
    if serves_0x(settings.image):
        if not settings.auth_enabled:
            return "\n".join(lines + [f'const client = new ChromaClient({{ path: "{url}" }});'])
        provider = "token" if settings.auth == "token" else "basic"
        extra = ', tokenHeaderType: "X_CHROMA_TOKEN"' if settings.token_header == "X-Chroma-Token" else ""
        return "\n".join(lines + [f'const client = new ChromaClient({{ path: "{url}",',
                                  f'  auth: {{ provider: "{provider}", credentials: {var}{extra} }} }});'])
    host, port = _host_port(url)
    ssl = ", ssl: true" if tls else ""
    if not settings.auth_enabled:
        return "\n".join(lines + [f'const client = new ChromaClient({{ host: "{host}", port: {port}{ssl} }});'])
    if settings.auth == "basic":
        header = f'Authorization: "Basic " + Buffer.from({var}).toString("base64")'
    elif settings.token_header == "X-Chroma-Token":
        header = f'"X-Chroma-Token": {var}'
    else:
        header = f"Authorization: `Bearer ${{{var}}}`"
    place = f', tenant: "{tenant}", database: "{scope_database(databases)}"' if tenant is not None else ""
    return "\n".join(lines + [f'const client = new ChromaClient({{ host: "{host}", port: {port}{ssl}{place},',
                              f"  headers: {{ {header} }} }});"])


def curl_check(ca_path: str, names: tuple[str, ...], port: int) -> str:
    """One line a client machine can run to check the server and its certificate: the first
    name of the certificate that is not a loopback one (else localhost)."""
    remote = [n for n in names if n not in ("localhost", "127.0.0.1", "::1")]
    name = remote[0] if remote else "localhost"
    host = f"[{name}]" if ":" in name else name
    return f"curl --cacert {ca_path} https://{host}:{port}/api/v2/heartbeat"
