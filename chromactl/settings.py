"""Project settings: the non-secret configuration kept in chromactl.yaml.

Pure: no environment or filesystem access. The CLI hands in what the operator gave
(flags, with CHROMACTL_* variables already folded in by Typer) and what the file holds;
resolve_settings() applies the precedence flag > env > file > default in one place.
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import asdict, dataclass, replace
from typing import Any, Mapping

from chromactl.errors import ChromactlError, ProjectFileError, UsageError
from chromactl.images import IMAGE_REFERENCE, auth_verdict
from chromactl.templates import render_template
from chromactl.yamlfile import load_yaml, require_mapping

SETTINGS_FILE = "chromactl.yaml"

AUTH_MODES = ("token", "basic", "none")
TOKEN_HEADERS = ("Authorization", "X-Chroma-Token")
# Current Chroma, behind chromactl's gateway: today's clients (1.x) cannot use a 0.6 server.
DEFAULT_IMAGE = "chromadb/chroma:1.5.9"
DEFAULT_PORT = 8000
DEFAULT_BCRYPT_ROUNDS = 6  # for chosen passwords; generated ones: credentials.GENERATED_ROUNDS
GATEWAYS = ("nginx", "none")
DEFAULT_GATEWAY_IMAGE = "nginx:1.27.5"  # the official image, pinned
TLS_MODES = ("auto", "files", "off")
MIN_BCRYPT_ROUNDS = 4
MAX_BCRYPT_ROUNDS = 14

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
_PATH_RE = re.compile(r"/[A-Za-z0-9_./-]{1,254}")
_DNS_NAME_RE = re.compile(r"(?=.{1,253}$)(\*\.)?([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


@dataclass(frozen=True)
class Settings:
    name: str
    auth: str
    rbac: bool
    token_header: str
    image: str
    host: str
    port: int
    bcrypt_rounds: int = DEFAULT_BCRYPT_ROUNDS
    gateway: str = "none"
    gateway_image: str = DEFAULT_GATEWAY_IMAGE
    tls: str = "off"  # auto: chromactl's own CA; files: the operator's; off
    tls_san: tuple[str, ...] = ()  # more names for the auto certificate
    tls_cert: str | None = None  # files: paths to the certificate (with its chain), key and CA
    tls_key: str | None = None
    tls_ca: str | None = None
    data_volume: str | None = None  # the data volume; None: chromactl-<name>-data (restore/upgrade switch it)
    data_path: str | None = None  # where the image keeps its data; None: told by the image (chromactl.images)

    @property
    def uses_gateway(self) -> bool:
        return self.gateway != "none"

    @property
    def auth_enabled(self) -> bool:
        return self.auth != "none"

    @property
    def uses_tls(self) -> bool:
        return self.tls != "off"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "tls_san": list(self.tls_san)}


FIELDS = tuple(Settings.__dataclass_fields__)


def default_name(folder_name: str) -> str:
    """A valid instance name derived from the project folder's name."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", folder_name).strip("-_.")[:63]
    return name if name and _NAME_RE.fullmatch(name) else "chroma"


def resolve_settings(
    given: Mapping[str, Any],
    stored: Mapping[str, Any] | None,
    *,
    folder_name: str,
) -> Settings:
    """Merge flag/env values (None = not given) over stored values over defaults."""
    stored = stored or {}

    def pick(key: str, default: Any) -> Any:
        if given.get(key) is not None:
            return given[key]
        if key in stored:
            return stored[key]
        return default

    auth = pick("auth", "token")
    image = pick("image", DEFAULT_IMAGE)
    settings = Settings(
        name=pick("name", default_name(folder_name)),
        auth=auth,
        rbac=pick("rbac", derived_default("rbac", auth, image, "")),
        token_header=pick("token_header", "Authorization"),
        image=image,
        host=pick("host", derived_default("host", auth, image, "")),
        port=pick("port", DEFAULT_PORT),
        bcrypt_rounds=pick("bcrypt_rounds", DEFAULT_BCRYPT_ROUNDS),
        gateway=pick("gateway", None),
        gateway_image=pick("gateway_image", DEFAULT_GATEWAY_IMAGE),
        tls=pick("tls", None),
        tls_san=tuple(pick("tls_san", ()) or ()),
        tls_cert=pick("tls_cert", None),
        tls_key=pick("tls_key", None),
        tls_ca=pick("tls_ca", None),
        data_volume=pick("data_volume", None),
        data_path=pick("data_path", None),
    )
    if settings.gateway is None:
        settings = replace(settings, gateway=default_gateway(settings.auth, settings.image))
    if settings.tls is None:
        settings = replace(settings, tls=derived_default("tls", auth, image, settings.host))
    problem = validate_settings(settings)
    if problem:
        key, message = problem
        # The file is at fault when it holds the value, or when no flag was given at all;
        # otherwise a flag made the combination (`init --force --tls files` without --tls-cert).
        flags = any(value is not None for value in given.values())
        if given.get(key) is None and (stored.get(key) is not None or not flags):
            raise ChromactlError(f"chromactl.yaml: {message}")
        raise UsageError(f"--{key.replace('_', '-')}: {message}")  # a flag or its CHROMACTL_* variable
    return settings


# Settings whose default follows from others: auth decides RBAC and the address, the
# image decides the gateway, the address decides TLS.
DERIVED = ("rbac", "host", "gateway", "tls")


def derived_default(key: str, auth: str, image: str, host: str) -> Any:
    if key == "rbac":
        return auth != "none"
    if key == "host":
        return "0.0.0.0" if auth != "none" else "127.0.0.1"
    if key == "gateway":
        return default_gateway(auth, image)
    if key == "tls":  # no secret crosses a network in cleartext; loopback never leaves the machine
        return "off" if is_loopback(host) else "auto"
    raise KeyError(key)


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def without_derived_defaults(stored: Mapping[str, Any]) -> dict[str, Any]:
    """The stored settings less those that merely hold the default derived from the others,
    so that re-initialising with another auth or image derives them anew (a new 1.x image
    gets its gateway) while a value the operator chose is kept."""
    auth = stored.get("auth", "token")
    image = stored.get("image", DEFAULT_IMAGE)
    host = stored.get("host", derived_default("host", auth, image, ""))
    return {key: value for key, value in stored.items()
            if key not in DERIVED or value != derived_default(key, auth, image, host)}


def default_gateway(auth: str, image: str) -> str:
    """nginx in front of a server that would ignore chromactl's auth settings (1.x, latest)."""
    return "nginx" if auth != "none" and auth_verdict(image).enforces_auth is False else "none"


def validate_settings(s: Settings) -> tuple[str, str] | None:
    """The first problem with these settings as (field, message), or None."""
    if not isinstance(s.name, str) or not _NAME_RE.fullmatch(s.name):
        return "name", f"invalid name {s.name!r}: use 1-63 letters, digits, '_', '.' or '-', starting with a letter or digit"
    if s.auth not in AUTH_MODES:
        return "auth", f"unknown auth mode {s.auth!r}: use one of {', '.join(AUTH_MODES)}"
    if not isinstance(s.rbac, bool):
        return "rbac", "rbac must be true or false"
    if s.rbac and s.auth == "none":
        return "rbac", "RBAC needs authentication: use auth token or basic, or turn rbac off"
    if s.token_header not in TOKEN_HEADERS:
        return "token_header", f"unknown token header {s.token_header!r}: use {' or '.join(TOKEN_HEADERS)}"
    if not isinstance(s.image, str) or not IMAGE_REFERENCE.fullmatch(s.image):
        return "image", f"invalid image reference {s.image!r}"
    try:
        ipaddress.ip_address(s.host)
    except ValueError:
        return "host", f"invalid host address {s.host!r}: give an IP address such as 127.0.0.1 or 0.0.0.0"
    if isinstance(s.port, bool) or not isinstance(s.port, int) or not 1 <= s.port <= 65535:
        return "port", f"invalid port {s.port!r}: give a number from 1 to 65535"
    if s.gateway not in GATEWAYS:
        return "gateway", f"unknown gateway {s.gateway!r}: use {' or '.join(GATEWAYS)}"
    if s.gateway != "none" and s.auth == "none":
        return "gateway", "a gateway enforces auth: with auth none there is nothing for it to do"
    if not isinstance(s.gateway_image, str) or not IMAGE_REFERENCE.fullmatch(s.gateway_image):
        return "gateway_image", f"invalid image reference {s.gateway_image!r}"
    if s.tls not in TLS_MODES:
        return "tls", f"unknown tls mode {s.tls!r}: use {', '.join(TLS_MODES)}"
    for name in s.tls_san:
        if not isinstance(name, str) or not (_DNS_NAME_RE.fullmatch(name) or _is_ip(name)):
            return "tls_san", f"invalid name {name!r} for the certificate: give a DNS name or an IP address"
    if s.tls == "files":
        for key in ("tls_cert", "tls_key", "tls_ca"):
            if not getattr(s, key):
                return key, f"tls files needs {key.replace('_', '-')} (a path to a PEM file)"
    if s.data_volume is not None and (not isinstance(s.data_volume, str) or not _NAME_RE.fullmatch(s.data_volume)):
        return "data_volume", f"invalid volume name {s.data_volume!r}: use letters, digits, '_', '.' or '-'"
    # Not above the image's folders ("/../"), nor the root itself however written ("/", "//", "/./").
    if s.data_path is not None and (not isinstance(s.data_path, str) or not _PATH_RE.fullmatch(s.data_path)
                                    or "/../" in s.data_path + "/" or set(s.data_path.split("/")) <= {"", "."}):
        return "data_path", f"invalid data path {s.data_path!r}: give an absolute path in the container, e.g. /data"
    rounds = s.bcrypt_rounds
    if isinstance(rounds, bool) or not isinstance(rounds, int) or not MIN_BCRYPT_ROUNDS <= rounds <= MAX_BCRYPT_ROUNDS:
        return "bcrypt_rounds", f"bcrypt rounds must be a number from {MIN_BCRYPT_ROUNDS} to {MAX_BCRYPT_ROUNDS}, not {rounds!r}"
    return None


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False


def parse_settings_file(text: str) -> dict[str, Any]:
    """Read chromactl.yaml into a dict of known keys, checking each value."""
    data = load_yaml(text, SETTINGS_FILE)
    if data is None:
        raise ProjectFileError(SETTINGS_FILE, "the file is empty")
    data = require_mapping(data, SETTINGS_FILE)
    for key in data:
        if key not in FIELDS:
            raise ProjectFileError(SETTINGS_FILE, f"unknown setting {key!r}", data.line_of(key),
                                   hint=f"known settings: {', '.join(FIELDS)}")
    optional = ("bcrypt_rounds", "gateway", "gateway_image", "tls", "tls_san", "tls_cert", "tls_key", "tls_ca",
                "data_volume", "data_path")
    missing = [key for key in FIELDS if key not in data and key not in optional]
    if missing:
        raise ProjectFileError(SETTINGS_FILE, f"missing setting {missing[0]!r}")
    values = {key: data[key] for key in FIELDS if key in data}
    if isinstance(values.get("tls_san"), list):
        values["tls_san"] = tuple(values["tls_san"])
    settings = Settings(**values)
    if "gateway" not in data:
        settings = replace(settings, gateway=default_gateway(settings.auth, settings.image))
    if "tls" not in data:
        settings = replace(settings, tls=derived_default("tls", settings.auth, settings.image, settings.host))
    problem = validate_settings(settings)
    if problem:
        key, message = problem
        raise ProjectFileError(SETTINGS_FILE, message, data.line_of(key))
    return {"data_volume": None, "data_path": None, **data}  # written only when set


def render_settings_file(s: Settings) -> str:
    # JSON scalars are valid YAML and quote strings safely.
    values = {key: json.dumps(value) for key, value in s.to_dict().items()}
    text = render_template("chromactl.yaml.tmpl", **values)
    if s.data_volume is not None:
        text += DATA_VOLUME_BLOCK.format(json.dumps(s.data_volume))
    if s.data_path is not None:
        text += DATA_PATH_BLOCK.format(json.dumps(s.data_path))
    return text


DATA_VOLUME_BLOCK = """
# The data volume, chosen by `chromactl restore` or `chromactl upgrade` (without this setting:
# chromactl-<name>-data). The previous one is kept until you remove it.
data_volume: {}
"""

DATA_PATH_BLOCK = """
# Where the image keeps its data (without this setting: told by the image's version, labels or
# command). chromactl checks after a start that Chroma's database is there, in the volume.
data_path: {}
"""
