"""The .chroma_env file: what the Chroma container gets as its environment.

Pure. Uses Chroma 0.5/0.6 variable names and provider classes. Values are literal
and unquoted, so `docker run --env-file` and python-dotenv read back the same thing.
"""

from __future__ import annotations

from chromactl.credentials import AUTHZ_FILE, HTPASSWD_FILE
from chromactl.errors import ProjectFileError
from chromactl.settings import Settings
from chromactl.templates import render_template

ENV_FILE = ".chroma_env"

# Where credential files are mounted inside the container.
MOUNT_DIR = "/etc/chromactl"

BASIC_PROVIDER = "chromadb.auth.basic_authn.BasicAuthenticationServerProvider"
TOKEN_PROVIDER = "chromadb.auth.token_authn.TokenAuthenticationServerProvider"
RBAC_PROVIDER = "chromadb.auth.simple_rbac_authz.SimpleRBACAuthorizationProvider"
# What chromactl before the internal network wrote behind a gateway (Chroma then shared the
# gateway's namespace and listened on its loopback): dropped when the file is rewritten,
# since Chroma now listens on its own internal network, where only the gateway reaches it.
LEGACY_LISTEN = ("CHROMA_LISTEN_ADDRESS", "CHROMA_HOST_ADDR")

BASIC_CLIENT = "chromadb.auth.basic_authn.BasicAuthClientProvider"
TOKEN_CLIENT = "chromadb.auth.token_authn.TokenAuthClientProvider"


def container_path(filename: str) -> str:
    return f"{MOUNT_DIR}/{filename}"


def server_environment(settings: Settings) -> dict[str, str]:
    """The variables, in order. Credentials always come from files: an env-file value
    cannot hold the newlines several users need, and a one-line credential is taken as
    a single anonymous token."""
    # A locked-down server does not report usage to a third party.
    env = {"ANONYMIZED_TELEMETRY": "False"}
    if settings.uses_gateway:
        # The gateway enforces auth; the server behind it runs without, on an internal
        # network that nothing but the gateway reaches (chromactl.deploy proves it).
        return env
    if settings.auth == "token":
        env["CHROMA_SERVER_AUTHN_PROVIDER"] = TOKEN_PROVIDER
        env["CHROMA_SERVER_AUTHN_CREDENTIALS_FILE"] = container_path(AUTHZ_FILE)
        env["CHROMA_AUTH_TOKEN_TRANSPORT_HEADER"] = settings.token_header
    elif settings.auth == "basic":
        env["CHROMA_SERVER_AUTHN_PROVIDER"] = BASIC_PROVIDER
        env["CHROMA_SERVER_AUTHN_CREDENTIALS_FILE"] = container_path(HTPASSWD_FILE)
    if settings.rbac:
        env["CHROMA_SERVER_AUTHZ_PROVIDER"] = RBAC_PROVIDER
        env["CHROMA_SERVER_AUTHZ_CONFIG_FILE"] = container_path(AUTHZ_FILE)
    return env


def describe_auth(settings: Settings) -> str:
    if settings.auth == "none":
        return "none -- this server accepts every request"
    how = f"token in the {settings.token_header} header" if settings.auth == "token" else "basic (user:password)"
    how += ", with RBAC" if settings.rbac else ", no RBAC: every user has full access"
    return how + (", enforced by an nginx gateway" if settings.uses_gateway else "")


def is_managed(key: str) -> bool:
    """Whether chromactl writes this variable for some settings (auth, telemetry, listening)."""
    upper = key.upper()
    return upper in ("ANONYMIZED_TELEMETRY", *LEGACY_LISTEN) or upper.startswith(("CHROMA_SERVER_AUTH", "CHROMA_AUTH_"))


def legacy_listen(settings: Settings, env: dict[str, str]) -> list[str]:
    """Variables left by an earlier chromactl that would keep Chroma on a loopback no gateway
    can reach now (the file is rewritten by `up`, keeping the operator's own variables)."""
    if not settings.uses_gateway:
        return []
    return [key for key in LEGACY_LISTEN if env.get(key) == "127.0.0.1"]


def operator_variables(existing: str | None) -> dict[str, str]:
    """The variables an operator added to an env file, to keep when chromactl rewrites it
    (init --force, upgrade); an unreadable old file keeps nothing, as before."""
    if not existing:
        return {}
    try:
        return {key: value for key, value in parse_env_file(existing).items() if not is_managed(key)}
    except ProjectFileError:
        return {}


def render_env_file(settings: Settings, kept: dict[str, str] | None = None) -> str:
    variables = "".join(f"{key}={value}\n" for key, value in server_environment(settings).items())
    if kept:
        variables += "# Yours: kept by chromactl when it rewrites this file.\n"
        variables += "".join(f"{key}={value}\n" for key, value in kept.items())
    return render_template("chroma_env.tmpl", summary=describe_auth(settings), variables=variables)


def parse_env_file(text: str, filename: str = ENV_FILE) -> dict[str, str]:
    """Read an env file the way `docker run --env-file` does: `KEY=VALUE` taken
    literally, `#` lines and blank lines skipped. A bare `KEY` (which Docker fills
    from the caller's environment) is refused: the container must not depend on it."""
    env: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.lstrip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise ProjectFileError(filename, f"{key.strip()!r} has no value: write KEY=VALUE", number)
        if not key or any(c.isspace() for c in key):
            raise ProjectFileError(filename, "a variable name cannot be empty or contain spaces", number)
        env[key] = value
    return env
