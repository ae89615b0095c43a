"""The nginx auth gateway: chromactl's users, tokens and roles, written as nginx
configuration so that no auth code of ours sits in the request path. Pure.

Tokens are matched by case-sensitive, anchored regular expressions (nginx compares plain
map strings ignoring case); every character that is not a letter or digit is written as
a PCRE hex escape, so no token can break out of the configuration's syntax."""

from __future__ import annotations

import re

from chromactl.credentials import HTPASSWD_FILE, Credentials, render_htpasswd
from chromactl.routes import AUTHENTICATED, PUBLIC_ROUTES, ROUTES
from chromactl.settings import Settings
from chromactl.spec import CONTAINER_PORT, ContainerSpec, Mount, container_name, gateway_name, labelled, network_name
from chromactl.templates import render_template

CONFIG_FILE = "nginx.conf"
MOUNT_DIR = "/etc/chromactl-gateway"  # the gateway's folder, mounted whole (see gateway_spec)
LISTEN_PORT = CONTAINER_PORT
# The official nginx image's worker user and group (uid/gid 101).
WORKER_USER = "nginx"
WORKER_GID = 101
COMMAND = ("nginx", "-c", f"{MOUNT_DIR}/{CONFIG_FILE}", "-g", "daemon off;")

FORBIDDEN = """'{"error":"AuthError","message":"Forbidden"}'"""


def _pcre_literal(text: str) -> str:
    return "".join(c if c.isascii() and c.isalnum() else f"\\x{ord(c):02x}" for c in text)


def path_pattern(template: str) -> str:
    """/api/v2/tenants/{tenant} -> /api/v2/tenants/[^/]+ (a regex for nginx's $uri)."""
    parts = re.split(r"(\{[^}]+\})", template)
    return "".join("[^/]+" if p.startswith("{") else re.escape(p).replace("\\/", "/") for p in parts)


def _role_rules(role: str, actions: tuple[str, ...]) -> list[str]:
    lines = []
    for method, template, allowed_by in ROUTES:
        if AUTHENTICATED in allowed_by or set(allowed_by) & set(actions):
            lines.append(f'        "~^{_pcre_literal(role)}:{method}:{path_pattern(template)}$" 1;')
    return lines


def default_upstream(settings: Settings) -> str:
    return f"{container_name(settings)}:{CONTAINER_PORT}"


def render_gateway(settings: Settings, credentials: Credentials, upstream: str,
                   listen: int = LISTEN_PORT) -> dict[str, str]:
    """The gateway's files: name in its folder -> content."""
    maps: list[str] = []
    files: dict[str, str] = {}
    if settings.auth == "token":
        header = "$http_x_chroma_token" if settings.token_header == "X-Chroma-Token" else "$http_authorization"
        prefix = "" if settings.token_header == "X-Chroma-Token" else "Bearer "
        maps.append(f"    map {header} $chromactl_user {{")
        maps.append('        default "";')
        for user in credentials.users:
            for token in user.tokens:
                maps.append(f'        "~^{_pcre_literal(prefix + token)}$" {user.name};')
        maps.append("    }")
        user_variable = "$chromactl_user"
    else:
        user_variable = "$remote_user"  # checked against the htpasswd file by auth_basic
        files[HTPASSWD_FILE] = render_htpasswd(credentials)

    if settings.rbac:
        maps.append(f"    map {user_variable} $chromactl_role {{")
        maps.append('        default "";')
        for user in credentials.users:
            # Regex keys: nginx matches plain map strings ignoring case.
            maps.append(f'        "~^{_pcre_literal(user.name)}$" {user.role};')
        maps.append("    }")
        maps.append('    map "$chromactl_role:$request_method:$uri" $chromactl_allowed {')
        maps.append("        default 0;")
        for role, actions in (credentials.roles or {}).items():
            maps.extend(_role_rules(role, actions))
        maps.append("    }")

    directives = []
    if settings.auth == "token":
        directives.append('            if ($chromactl_user = "") { return 403 ' + FORBIDDEN + "; }")
    if settings.rbac:
        # The rewrite phase runs before auth_basic: an unknown or unauthorised user is
        # refused here, a known one with a wrong password by auth_basic just after.
        directives.append("            if ($chromactl_allowed = 0) { return 403 " + FORBIDDEN + "; }")
    if settings.auth == "basic":
        directives.append('            auth_basic "chroma";')
        directives.append(f"            auth_basic_user_file {MOUNT_DIR}/{HTPASSWD_FILE};")

    public = []
    for method, template in PUBLIC_ROUTES:
        public.append(f"        location = {template} {{ limit_except {method} {{ deny all; }} proxy_pass http://chroma; }}")

    how = f"token in {settings.token_header}" if settings.auth == "token" else "basic"
    files[CONFIG_FILE] = render_template(
        "gateway-nginx.conf.tmpl", summary=how + (", RBAC" if settings.rbac else ""), upstream=upstream,
        user=WORKER_USER, listen=str(listen),
        maps="\n".join(maps), public_locations="\n".join(public), auth_directives="\n".join(directives))
    return files


def uncovered_actions(roles: dict[str, tuple[str, ...]]) -> list[str]:
    """Actions some role grants that no route of the table carries: a table out of date."""
    covered = {action for _, _, allowed_by in ROUTES for action in allowed_by}
    granted = {a for actions in roles.values() for a in actions}
    return sorted(granted - covered)


def gateway_spec(project_root: str, settings: Settings, gateway_dir: str, image_id: str) -> ContainerSpec:
    """The nginx gateway: the only published port. Its configuration folder is mounted
    whole, so rewritten files are seen by a reload (SIGHUP) without a restart; their
    content is therefore not part of its configuration hash."""
    spec = ContainerSpec(
        name=gateway_name(settings), image=settings.gateway_image, environment={},
        mounts=(Mount(gateway_dir, MOUNT_DIR),), volume=None, data_path=None,
        host=settings.host, port=settings.port, network=network_name(settings), command=COMMAND,
    )
    return labelled(spec, project_root, settings, "gateway", image_id, {})
