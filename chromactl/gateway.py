"""The nginx auth gateway: chromactl's users, tokens and roles, written as nginx
configuration so that no auth code of ours sits in the request path. Pure.

The gateway's container publishes the port and reaches Chroma at a static address on an
internal network with no address on the host's side: nothing but the gateway reaches
Chroma, and each container restarts on its own (no shared namespace to lose).

Tokens are matched by case-sensitive, anchored regular expressions (nginx compares plain
map strings ignoring case); every character of a token or name that is not a letter or
digit is written as a PCRE hex escape, and map values are names checked when read
(credentials.name_problem) and quoted, so nothing from the credential files can break out
of the configuration's syntax."""

from __future__ import annotations

import re

from chromactl.credentials import (
    ALL_DATABASES,
    CHEAP_ROUNDS,
    HTPASSWD_FILE,
    Credentials,
    User,
    hash_cost,
    name_problem,
    render_htpasswd,
    scope_name_problem,
)
from chromactl.routes import (
    AUTHENTICATED,
    COLLECTION_ID,
    CRN,
    DATABASE,
    IDENTITY,
    PUBLIC_ROUTES,
    ROUTES,
    SCOPES,
    TENANT,
    TENANT_WIDE,
    UNKNOWN_ACTION,
    audit_actions,
)
from chromactl.settings import Settings
from chromactl.spec import (
    CONTAINER_PORT,
    Attachment,
    ContainerSpec,
    LogRotation,
    Mount,
    gateway_name,
    internal_network_name,
    labelled,
    network_name,
)
from chromactl.templates import render_template

CONFIG_FILE = "nginx.conf"
MOUNT_DIR = "/etc/chromactl-gateway"  # the gateway's folder, mounted whole (see gateway_spec)
LISTEN_PORT = 8080  # inside the gateway's container
REFUSED_PORT = 8081  # on the gateway's own loopback: where refused requests get their 403
# Where an authenticated caller's request beyond its role gets the same 403 with one header
# more (REFUSED_HEADER: role), so that its operator can tell a missing role from a wrong
# secret (`chromactl doctor`). Strangers and wrong secrets never reach it: they learn nothing.
REFUSED_ROLE_PORT = 8082
REFUSED_HEADER = "X-Chromactl-Refused"
# With users scoped to a tenant: where a request outside the caller's tenant and databases
# gets its 403 (REFUSED_HEADER: scope), and where the gateway answers such a caller's
# identity itself (its tenant and databases, as Chroma's clients read them).
REFUSED_SCOPE_PORT = 8083
IDENTITY_PORT = 8084
SCOPE_CHECK = "/_chromactl/scope"  # internal: is the collection id in the path's tenant and database?
# Chroma's by-id lookup, asked for each collection id a scoped user's request names, is
# cached: a collection never moves to another tenant and ids are never reused, so a "yes"
# holds for good; a "no" is kept a minute, so that one id sent again and again costs Chroma
# one lookup a minute.
SCOPE_FOUND_TTL = "1h"
SCOPE_MISSING_TTL = "1m"
SCOPE_CACHE_MB = 16
UPSTREAM = f"127.0.0.1:{CONTAINER_PORT}"  # Chroma in the same pod (Kubernetes); `up` gives its internal address
COMMAND = ("nginx", "-e", "stderr", "-c", f"{MOUNT_DIR}/{CONFIG_FILE}", "-g", "daemon off;")
# Checks the configuration in the running gateway: nginx keeps the old one, silently, when a
# reload meets a bad one (a certificate that does not match its key, say).
CHECK_COMMAND = ("nginx", "-t", "-q", "-e", "stderr", "-c", f"{MOUNT_DIR}/{CONFIG_FILE}")
# Reloads the running gateway and returns once every worker that still accepts connections
# runs the new configuration: nginx starts new workers and only then tells the old ones to
# stop, so a request right after a bare SIGHUP may still meet the old credentials or
# certificate. The old workers are the ones whose title was "worker process" before the
# signal; a worker told to stop renames itself "... is shutting down" as it closes its sockets.
RELOAD_TIMEOUT_S = 10
RELOAD_COMMAND = ("sh", "-c", f"""
workers() {{
  for p in /proc/[0-9]*; do
    [ "$(tr -d '\\000' < "$p/cmdline" 2>/dev/null)" = "nginx: worker process" ] && echo "${{p#/proc/}}"
  done
}}
old=" $(workers | tr '\\n' ' ')"
kill -HUP "$(cat /tmp/chromactl-gateway.pid)" || exit 1
i=0
while [ "$i" -lt {RELOAD_TIMEOUT_S * 10} ]; do
  now=$(workers); stale=no
  for w in $now; do case "$old" in *" $w "*) stale=yes;; esac; done
  [ -n "$now" ] && [ "$stale" = no ] && exit 0
  sleep 0.1; i=$((i + 1))
done
echo "nginx still runs workers with its old configuration {RELOAD_TIMEOUT_S} s after the reload"; exit 1
""")
# Connections one client address may hold open at once.
CONNECTIONS_PER_CLIENT = 256
# One address may spend about this much of the gateway's CPU per second on bcrypt for users
# whose hash is costly (above CHEAP_ROUNDS), right password or wrong: each request costs
# the hash before any answer. Their request rate is limited to fit; a burst passes at once.
COSTLY_CPU_MS_PER_SECOND = 100
COSTLY_BURST = 20


def costly_rate_per_minute(cost: int) -> int:
    """Requests per minute that spend COSTLY_CPU_MS_PER_SECOND on a hash of this cost (bcrypt
    doubles per step; cost 4 takes ~0.9 ms here): cost 8 -> 416, 10 -> 104, 12 -> 26."""
    return max(6, int(60 * COSTLY_CPU_MS_PER_SECOND / (0.9 * 2 ** (cost - 4))))
# The unprivileged user the gateway runs as when chromactl runs as root; otherwise the
# operator's own uid and gid. No image user is assumed.
UNPRIVILEGED_ID = 10101

FORBIDDEN = """'{"error":"AuthError","message":"Forbidden"}'"""
FORBIDDEN_SCOPE = """'{"error":"AuthError","message":"Forbidden: outside the tenant and databases of this user"}'"""
_UUID = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"  # as Chroma writes collection ids

# The audit trail: one JSON line per request (escape=json), `audit` first so that a reader
# tells these lines from nginx's own messages at a glance. No secret is in it: users are
# named only when the gateway knows them, never by what a stranger sent.
AUDIT_FORMAT = (
    '{"audit":1,"time":"$time_iso8601","ts":$msec,"client":"$remote_addr","user":"$chromactl_audit_user",'
    '"role":"$chromactl_audit_role","action":"$chromactl_action","tenant":"$chromactl_tenant",'
    '"database":"$chromactl_database","collection":"$chromactl_collection","method":"$request_method",'
    '"path":"$uri","status":$status,"reason":"$chromactl_reason","seconds":$request_time,'
    '"bytes_in":$request_length,"bytes_out":$bytes_sent,"agent":"$http_user_agent"}')


# The gateway's log (the audit trail on stdout, nginx's own messages on stderr) is bounded
# by the engine's json-file driver: a new file every 10 MiB, the newest 5 kept (about 150,000
# requests at ~350 bytes a line). `up` and `down` archive it before they remove the
# container (chromactl.audit_archive): a restart keeps it anyway.
LOG_ROTATION = LogRotation(max_size="10m", max_files=5)


def _pcre_literal(text: str) -> str:
    return "".join(c if c.isascii() and c.isalnum() else f"\\x{ord(c):02x}" for c in text)


def _quoted_name(name: str) -> str:
    """A user or role name as an nginx string; names were checked when read, and are
    checked again here, since this is where they would do harm."""
    problem = name_problem(name)
    if problem:
        raise ValueError(f"refusing to write name {name!r} into nginx.conf: {problem}")
    return f'"{name}"'


def path_pattern(template: str) -> str:
    """/api/v2/tenants/{tenant} -> /api/v2/tenants/[^/]+ (a regex for nginx's $uri)."""
    parts = re.split(r"(\{[^}]+\})", template)
    return "".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts)


def _route_pattern(template: str) -> str:
    """A route's path as sent (raw, with an optional query), each placeholder captured."""
    parts = re.split(r"(\{[^}]+\})", template)
    out = []
    for part in parts:
        if part == "{crn}":
            out.append("([^/?|:]+):([^/?|:]+):([^/?|]+)")
        elif part.startswith("{"):
            out.append("([^/?|]+)")
        else:
            out.append(re.escape(part))
    return "".join(out) + "(?:\\?|\\z)"


def _anchored(text: str) -> str:
    # \z, not $: PCRE's $ also matches before a final newline, which %0A puts in $uri.
    return f'"~^{text}\\z"'


def _role_rules(role: str, actions: tuple[str, ...], value: str) -> list[str]:
    """Map lines sending each route the role may call to `value`."""
    lines = []
    for method, template, allowed_by in ROUTES:
        if AUTHENTICATED in allowed_by or set(allowed_by) & set(actions):
            lines.append(f"        {_anchored(_pcre_literal(role) + ':' + method + ':' + path_pattern(template))} {value};")
    return lines


def _maps(settings: Settings, credentials: Credentials, probe_header: str | None = None) -> list[str]:
    """Who the caller is ($chromactl_user, or $remote_user under basic auth), which role
    that is, and where the request goes ($chromactl_backend: Chroma, or the refusal); and
    whose requests count against their address's limit ($chromactl_limit_key: strangers').
    Then what the audit trail says of it, and, with scoped users, their scope."""
    maps: list[str] = []
    if settings.auth == "token":
        header = "$http_x_chroma_token" if settings.token_header == "X-Chroma-Token" else "$http_authorization"
        prefix = "" if settings.token_header == "X-Chroma-Token" else "Bearer "
        maps.append(f"    map {header} $chromactl_user {{")
        maps.append('        default "";')
        for user in credentials.users:
            for token in user.tokens:
                maps.append(f"        {_anchored(_pcre_literal(prefix + token))} {_quoted_name(user.name)};")
        maps.append("    }")
        user_variable = "$chromactl_user"
        # A token matched exactly is as good as authenticated: its requests are not limited.
        maps += ["    map $chromactl_user $chromactl_limit_key {", '        "" $binary_remote_addr;',
                 '        default "";', "    }"]
    else:
        user_variable = "$remote_user"  # checked against the htpasswd file by auth_basic first
        # The password is checked only after the limit (access phase): only the exact header
        # of chromactl's probe, which it knows, is exempt; everyone else counts per address.
        maps += ["    map $http_authorization $chromactl_limit_key {", "        default $binary_remote_addr;"]
        if probe_header:
            maps.append(f"        {_anchored(_pcre_literal(probe_header))} \"\";")
        maps.append("    }")

    for cost, users in _costly_users(settings, credentials).items():
        maps.append(f"    map $remote_user $chromactl_cost{cost} {{")
        maps.append('        default "";')
        for name in users:
            maps.append(f"        {_anchored(_pcre_literal(name))} $binary_remote_addr;")
        maps.append("    }")
        maps.append(f"    limit_req_zone $chromactl_cost{cost} zone=chromactl_cost{cost}:1m "
                    f"rate={costly_rate_per_minute(cost)}r/m;")

    if settings.rbac:
        maps.append(f"    map {user_variable} $chromactl_role {{")
        maps.append('        default "";')
        for user in credentials.users:
            maps.append(f"        {_anchored(_pcre_literal(user.name))} {_quoted_name(user.role)};")
        maps.append("    }")
        # A caller with a role (authenticated) is refused with the reason; anyone else without.
        maps += ["    map $chromactl_role $chromactl_refusal {", '        "" chromactl_refused;',
                 "        default chromactl_refused_role;", "    }"]
        maps.append('    map "$chromactl_role:$request_method:$uri" $chromactl_backend {')
        maps.append("        default $chromactl_refusal;")
        for role, actions in (credentials.roles or {}).items():
            _quoted_name(role)  # refuses a name that should never have got this far
            maps.extend(_role_rules(role, actions, "chroma"))
        maps.append("    }")
    elif settings.auth == "token":
        maps.append("    map $chromactl_user $chromactl_backend {")
        maps.append('        "" chromactl_refused;')
        maps.append("        default chroma;")
        maps.append("    }")
    return maps + _route_maps() + _scope_maps(settings, credentials) + _audit_maps(settings, credentials)


def _user_variable(settings: Settings) -> str:
    return "$chromactl_user" if settings.auth == "token" else "$remote_user"


def _credential_header(settings: Settings) -> str:
    return "$http_x_chroma_token" if settings.auth == "token" and settings.token_header == "X-Chroma-Token" \
        else "$http_authorization"


# The fields of $chromactl_route, in order, each read out by a map of its own.
ROUTE_FIELDS = ("action", "route_kind", "tenant", "database", "collection")


def _route_maps() -> list[str]:
    """Which route a request takes, read from the path as sent ($request_uri, which a
    subrequest sees as its main request does): its name for the audit trail, its kind of
    scope (routes.SCOPES), and the tenant, database and collection it names, as
    "action|kind|tenant|database|collection". A path no route describes is "unknown"."""
    lines = ['    map "$request_method $request_uri" $chromactl_route {', f'        default "{UNKNOWN_ACTION}||||";']
    for method, template, action in audit_actions():
        names = re.findall(r"\{([^}]+)\}", template)
        captured: dict[str, str] = {}
        group = 1
        for name in names:
            if name == "crn":
                captured.update(tenant=f"${group}", database=f"${group + 1}", collection=f"${group + 2}")
                group += 3
            else:
                field = {"tenant": "tenant", "database": "database", "collection_id": "collection"}.get(name)
                if field:
                    captured[field] = f"${group}"
                group += 1
        kind = SCOPES.get((method, template), "public")
        value = "|".join((action, kind, captured.get("tenant", ""), captured.get("database", ""),
                          captured.get("collection", "")))
        lines.append(f'        "~^{method} {_route_pattern(template)}" "{value}";')
    lines.append("    }")
    skip = "[^|]*\\|"
    for index, field in enumerate(ROUTE_FIELDS):
        lines.append(f'    map $chromactl_route $chromactl_{field} {{ "~^{skip * index}([^|]*)" $1; }}')
    return lines


def scoped_users(credentials: Credentials) -> list[User]:
    return [u for u in credentials.users if u.scoped]


def _scope_maps(settings: Settings, credentials: Credentials) -> list[str]:
    """Where a scoped user's request may go ($chromactl_scope): `in` its tenant and databases,
    `check` (a collection id, which must belong to the path's tenant and database: asked of
    Chroma at SCOPE_CHECK), `identity` (answered by the gateway), or `out`. Unscoped users: ""
    (their role alone decides). Only with scoped users: otherwise nothing of this is written."""
    scoped = scoped_users(credentials)
    if not scoped:
        return []
    if not settings.rbac:
        raise ValueError("refusing to scope users without RBAC: the role decides inside the scope")
    key = f"{_user_variable(settings)}|$chromactl_route_kind|$chromactl_tenant|$chromactl_database|$chromactl_collection"
    lines = [f'    map "{key}" $chromactl_scope {{', '        default "";']
    identities = []
    for user in scoped:
        who, tenant = _pcre_literal(user.name), _scope_literal(user.tenant, "tenant")
        databases = "(?:" + "|".join(_scope_literal(d, "database") for d in user.databases) + ")" \
            if user.databases else "[^|]+"
        kind = {k: _pcre_literal(k) for k in (IDENTITY, TENANT, TENANT_WIDE, DATABASE, CRN, COLLECTION_ID)}
        lines.append(f'        "~^{who}\\|{kind[IDENTITY]}\\|" identity;')
        lines.append(f'        "~^{who}\\|{kind[TENANT]}\\|{tenant}\\|" in;')
        lines.append(f'        "~^{who}\\|(?:{kind[DATABASE]}|{kind[CRN]})\\|{tenant}\\|{databases}\\|" in;')
        if not user.databases:
            lines.append(f'        "~^{who}\\|{kind[TENANT_WIDE]}\\|{tenant}\\|" in;')
        lines.append(f'        "~^{who}\\|{kind[COLLECTION_ID]}\\|{tenant}\\|{databases}\\|{_UUID}\\z" check;')
        lines.append(f'        "~^{who}\\|" out;')
        listed = ",".join(f'"{d}"' for d in (user.databases or (ALL_DATABASES,)))
        identity = f'{{"user_id":"{user.name}","tenant":"{user.tenant}","databases":[{listed}]}}'
        identities.append(f"        {_anchored(_pcre_literal(user.name))} '{identity}';")
    lines.append("    }")
    lines.append("    map $chromactl_scope $chromactl_lookup {")
    lines.append('        default "";')
    lines.append("        check /api/v2/tenants/$chromactl_tenant/databases/$chromactl_database/collections/by-id/"
                 "$chromactl_collection;")
    lines.append("    }")
    lines.append("    map $chromactl_scope $chromactl_scoped_backend {")
    lines.append("        default $chromactl_backend;")
    lines.append("        out chromactl_refused_scope;")
    lines.append("        identity chromactl_identity;")
    lines.append("    }")
    # What the identity server answers: sent to it alone, in a header the client cannot set.
    lines.append(f'    map "$chromactl_scope|{_user_variable(settings)}" $chromactl_identity {{')
    lines.append('        default "";')
    lines += [line.replace('"~^', '"~^identity\\|', 1) for line in identities]
    lines.append("    }")
    return lines


def _scope_literal(name: str | None, what: str) -> str:
    problem = scope_name_problem(name, what)
    if problem:
        raise ValueError(f"refusing to write {what} {name!r} into nginx.conf: {problem}")
    return _pcre_literal(name)


def _audit_maps(settings: Settings, credentials: Credentials) -> list[str]:
    """What the audit trail says of a request: who (a user the gateway knows, "unknown" for
    credentials it does not, "" for none; public routes check none: ""), with which role, and
    why it was refused (no or bad credentials, role, scope, limited)."""
    sent = _credential_header(settings)
    lines = [f"    map {sent} $chromactl_sent_credentials {{ \"\" 0; default 1; }}"]
    if settings.auth == "token":
        lines += ['    map "$chromactl_route_kind|$chromactl_user|$chromactl_sent_credentials" $chromactl_audit_user {',
                  '        default "";', '        "~^public\\|" "";', '        "~^[^|]*\\|\\|1\\z" unknown;',
                  '        "~^[^|]*\\|([^|]+)\\|" $1;', "    }"]
    else:
        lines += ['    map "$chromactl_route_kind|$remote_user" $chromactl_audit_user {', "        default unknown;",
                  '        "~^public\\|" "";', '        "~^[^|]*\\|\\z" "";']
        lines += [f'        "~^[^|]*\\|({_pcre_literal(u.name)})\\z" $1;' for u in credentials.users]
        lines.append("    }")
    if scoped_users(credentials):
        backend = "$chromactl_scoped_backend"
    elif settings.rbac or settings.auth == "token":
        backend = "$chromactl_backend"
    else:
        backend = "chroma"
    lines += [f'    map "$status|$chromactl_sent_credentials|{backend}" $chromactl_reason {{', '        default "";',
              '        "~^401\\|0\\|" no_credentials;', '        "~^401\\|" bad_credentials;',
              '        "~^429\\|" limited;', '        "~^403\\|0\\|chromactl_refused\\z" no_credentials;',
              '        "~^403\\|1\\|chromactl_refused\\z" bad_credentials;',
              '        "~^403\\|[01]\\|chromactl_refused_role\\z" role;',
              '        "~^403\\|[01]\\|chromactl_refused_scope\\z" scope;']
    if scoped_users(credentials):
        # Chroma behind the gateway never answers 403 itself: this is the id check's refusal.
        lines.append('        "~^403\\|1\\|chroma\\z" scope;')
    lines.append("    }")
    role = "$chromactl_role" if settings.rbac else "admin"
    lines += ['    map "$chromactl_reason|$chromactl_audit_user" $chromactl_audit_role {', '        default "";',
              '        "~^(?:|role|scope)\\|(?:|unknown)\\z" "";', f'        "~^(?:|role|scope)\\|" {role};', "    }"]
    return lines


def _costly_users(settings: Settings, credentials: Credentials) -> dict[int, list[str]]:
    """Basic-auth users whose hash costs more than CHEAP_ROUNDS, by cost."""
    by_cost: dict[int, list[str]] = {}
    if settings.auth == "basic":
        for user in credentials.users:
            cost = hash_cost(user.password_hash) or 0
            if cost > CHEAP_ROUNDS:
                by_cost.setdefault(cost, []).append(user.name)
    return dict(sorted(by_cost.items()))


TLS_CERT_FILE = "server.pem"
TLS_KEY_FILE = "server.key"


def render_gateway(settings: Settings, credentials: Credentials, upstream: str = UPSTREAM,
                   listen: int = LISTEN_PORT, tls: tuple[str, str] | None = None,
                   probe_header: str | None = None) -> dict[str, str]:
    """The gateway's files: name in its folder -> content. With `tls` (certificate with its
    chain, key), the port speaks TLS 1.2 and 1.3 only; a plain request on it gets nginx's 400."""
    files: dict[str, str] = {}
    tls_directives = ""
    if tls is not None:
        files[TLS_CERT_FILE], files[TLS_KEY_FILE] = tls
        tls_directives = "\n".join((
            f"        ssl_certificate {MOUNT_DIR}/{TLS_CERT_FILE};",
            f"        ssl_certificate_key {MOUNT_DIR}/{TLS_KEY_FILE};",
            "        ssl_protocols TLSv1.2 TLSv1.3;",
            "        ssl_session_cache shared:chromactl_tls:1m;",
            "        ssl_session_timeout 1h;"))
    directives = []
    if settings.auth == "basic":
        files[HTPASSWD_FILE] = render_htpasswd(credentials)
        # Before auth_basic: an address trying a costly user too often gets 429, not a bcrypt.
        for cost in _costly_users(settings, credentials):
            directives.append(f"            limit_req zone=chromactl_cost{cost} burst={COSTLY_BURST} nodelay;")
        if _costly_users(settings, credentials):
            directives.append("            limit_req_status 429;")
        directives.append('            auth_basic "chroma";')
        directives.append(f"            auth_basic_user_file {MOUNT_DIR}/{HTPASSWD_FILE};")
    scoped = bool(scoped_users(credentials))
    if scoped:
        # After authentication (the access phase runs auth_basic first): a collection id in
        # the path must be in the path's tenant and database; refused, with the reason.
        directives.append(f"            auth_request {SCOPE_CHECK};")
        directives.append("            error_page 403 = @chromactl_refused_scope;")
        # Declared here, a proxy_set_header replaces those of the http block: all of them again.
        directives.append("            proxy_set_header Connection \"\";")
        directives.append("            proxy_set_header Host $host;")
        directives.append("            proxy_set_header X-Chromactl-Identity $chromactl_identity;")
    # The decision is made where the request is proxied, in the content phase: after
    # auth_basic has checked the password, so an unknown user and a wrong password get the
    # same 401, and no role is revealed to anyone who has not authenticated.
    backend = "$chromactl_scoped_backend" if scoped else \
        "$chromactl_backend" if settings.rbac or settings.auth == "token" else "chroma"
    directives.append(f"            proxy_pass http://{backend};")

    public = [f"        location = {template} {{ limit_except {method} {{ deny all; }} proxy_pass http://chroma; }}"
              for method, template in PUBLIC_ROUTES]
    how = f"token in {settings.token_header}" if settings.auth == "token" else "basic"
    files[CONFIG_FILE] = render_template(
        "gateway-nginx.conf.tmpl", summary=how + (", RBAC" if settings.rbac else "") + (", scoped users" if scoped else ""),
        upstream=upstream, refused=f"127.0.0.1:{REFUSED_PORT}", refused_role=f"127.0.0.1:{REFUSED_ROLE_PORT}",
        refused_header=REFUSED_HEADER, audit_format=AUDIT_FORMAT,
        listen=f"{listen} ssl" if tls else str(listen), tls_directives=tls_directives, forbidden=FORBIDDEN, conn_per_client=str(CONNECTIONS_PER_CLIENT),
        maps="\n".join(_maps(settings, credentials, probe_header)), public_locations="\n".join(public),
        auth_directives="\n".join(directives), scope_servers=_scope_servers() if scoped else "",
        scope_locations=_scope_locations() if scoped else "")
    return files


def _scope_servers() -> str:
    """With scoped users: the cache of Chroma's by-id answers, the refusal with its reason
    `scope`, and the identity answered by the gateway (its value comes in a header that
    location / alone sets)."""
    return "\n".join((
        "    # Chroma's by-id answers for scoped users' collection ids (see SCOPE_CHECK).",
        f"    proxy_cache_path /tmp/chromactl-scope levels=1 keys_zone=chromactl_scope:1m max_size={SCOPE_CACHE_MB}m",
        "                     inactive=1h use_temp_path=off;",
        "    # A scoped user's request outside its tenant and databases: refused, with the reason.",
        "    upstream chromactl_refused_scope {",
        f"        server 127.0.0.1:{REFUSED_SCOPE_PORT};",
        "    }",
        "    server {",
        f"        listen 127.0.0.1:{REFUSED_SCOPE_PORT};",
        "        access_log off;",
        f"        location / {{ add_header {REFUSED_HEADER} scope always; return 403 {FORBIDDEN_SCOPE}; }}",
        "    }",
        "    # A scoped user's identity, as Chroma's clients read it to pick its tenant and database.",
        "    upstream chromactl_identity {",
        f"        server 127.0.0.1:{IDENTITY_PORT};",
        "    }",
        "    server {",
        f"        listen 127.0.0.1:{IDENTITY_PORT};",
        "        access_log off;",
        "        location / { return 200 $http_x_chromactl_identity; }",
        "    }"))


def _scope_locations() -> str:
    """The id check: Chroma's by-id route answers only within the path's tenant and database
    (measured on 1.5.9: 404 elsewhere), so a scoped user's collection id is looked up there,
    the answer cached. 204 when the request names no id to check."""
    return "\n".join((
        f"        location = {SCOPE_CHECK} {{",
        "            internal;",
        '            if ($chromactl_lookup = "") { return 204; }',
        "            proxy_pass http://chroma$chromactl_lookup;",
        "            proxy_method GET;",
        "            proxy_pass_request_body off;",
        '            proxy_set_header Content-Length "";',
        '            proxy_set_header Connection "";',
        "            proxy_set_header Host $host;",
        "            proxy_cache chromactl_scope;",
        "            proxy_cache_key $chromactl_lookup;",
        f"            proxy_cache_valid 200 {SCOPE_FOUND_TTL};",
        f"            proxy_cache_valid 404 {SCOPE_MISSING_TTL};",
        "            proxy_ignore_headers Cache-Control Expires Set-Cookie Vary X-Accel-Expires;",
        "            proxy_intercept_errors on;",
        "            error_page 404 = @chromactl_not_in_scope;",
        "        }",
        "        location @chromactl_not_in_scope { return 403; }",
        "        location @chromactl_refused_scope {",
        f"            add_header {REFUSED_HEADER} scope always;",
        f"            return 403 {FORBIDDEN_SCOPE};",
        "        }"))


def uncovered_actions(roles: dict[str, tuple[str, ...]]) -> list[str]:
    """Actions some role grants that no route of the table carries: a table out of date."""
    covered = {action for _, _, allowed_by in ROUTES for action in allowed_by}
    granted = {a for actions in roles.values() for a in actions}
    return sorted(granted - covered)


def gateway_spec(project_root: str, settings: Settings, config_volume: str, image_id: str,
                 user: tuple[int, int], internal_address: str | None) -> ContainerSpec:
    """The nginx gateway: it publishes the only port, on the project's network, and reaches
    Chroma on the internal network (at `internal_address` there). Its files come from the
    project's config volume, mounted read-only, so rewritten files are seen by a reload
    (RELOAD_COMMAND) without a restart; their content is not part of its configuration hash. /tmp
    is a tmpfs: a gateway killed and restarted finds none of its old pid and temporary files."""
    spec = ContainerSpec(
        name=gateway_name(settings), image=settings.gateway_image, environment={},
        mounts=(Mount(config_volume, MOUNT_DIR),), volume=None, data_path=None,
        host=settings.host, port=settings.port, command=COMMAND, container_port=LISTEN_PORT,
        networks=(Attachment(network_name(settings)), Attachment(internal_network_name(settings), internal_address)),
        user=f"{user[0]}:{user[1]}", tmpfs=("/tmp",), log_rotation=LOG_ROTATION,
    )
    return labelled(spec, project_root, settings, "gateway", image_id, {})
