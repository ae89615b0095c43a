"""Users scoped to a tenant and databases, and the audit trail, read from the nginx.conf chromactl
renders, without Docker: the model (tests/nginx_model.py) decides every route for scoped users
of each role, with a stand-in for Chroma's by-id lookup, and says what the access log writes;
a real nginx (where installed) answers a sample of the same requests, and logs the same lines.

The expectations come from the route table's scope kinds (chromactl/routes.py SCOPES) and the
roles, plus the requests that would break each rule, stated by hand."""

from __future__ import annotations

import base64
import http.client
import json
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from chromactl import gateway, roles, routes
from chromactl.credentials import Credentials, User, hash_generated, hash_password
from chromactl.settings import resolve_settings
from nginx_model import CHROMA, Gateway, Request
from test_gateway_config import nginx_binary, running_nginx, table_allows

TOKEN = resolve_settings({}, None, folder_name="p")
X_TOKEN = resolve_settings({"token_header": "X-Chroma-Token"}, None, folder_name="p")
BASIC = resolve_settings({"auth": "basic"}, None, folder_name="p")
TOKEN_PLAIN = resolve_settings({"rbac": False}, None, folder_name="p")
BASIC_PLAIN = resolve_settings({"auth": "basic", "rbac": False}, None, folder_name="p")
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")

ACME_PROD = "0b6e3c8a-1f2d-4e5f-8a9b-0c1d2e3f4a5b"  # in acme/prod
ACME_OTHER = "1c7f4d9b-2a3e-4f60-9bac-1d2e3f4a5b6c"  # in acme/other
BETA_MAIN = "2d805eac-3b4f-4071-8cbd-2e3f4a5b6c7d"  # in beta/main
CHROMA_IDS = {"acme/prod": {ACME_PROD}, "acme/other": {ACME_OTHER}, "beta/main": {BETA_MAIN}}
SAMPLE_IDS = (ACME_PROD, ACME_OTHER, BETA_MAIN)
PLACES = [("acme", "prod"), ("acme", "other"), ("beta", "main")]

# Scoped users, one per role, and two unscoped ones: tenant acme, database prod, or the whole tenant.
SCOPED = {
    "rita": ("reader", ("prod",)), "wes": ("writer", ("prod",)), "ada": ("admin", ("prod",)),
    "tom": ("admin", ()), "tess": ("reader", ("prod", "other")),
}
UNSCOPED = {"root": "admin", "ursula": "reader"}


def token_of(name: str) -> str:
    return f"{name}Tok3n".ljust(40, "z")


def credentials(settings=TOKEN) -> Credentials:
    creds = Credentials(roles=dict(roles.BUILTIN_ROLES))
    for name, (role, databases) in SCOPED.items():
        creds = creds.with_user(_user(settings, name, role, "acme", databases))
    for name, role in UNSCOPED.items():
        creds = creds.with_user(_user(settings, name, role, None, ()))
    return creds


def _user(settings, name, role, tenant, databases) -> User:
    if settings.auth == "token":
        return User(name, role, tokens=(token_of(name),), tenant=tenant, databases=databases)
    return User(name, role, password_hash=hash_generated(password_of(name), settings), tenant=tenant,
                databases=databases)


def password_of(name: str) -> str:
    return f"{name}-password-24-chars".ljust(24, "x")


def credential(settings, name: str) -> dict[str, str]:
    if settings.auth == "basic":
        return {"Authorization": "Basic " + base64.b64encode(f"{name}:{password_of(name)}".encode()).decode()}
    if settings.token_header == "X-Chroma-Token":
        return {"X-Chroma-Token": token_of(name)}
    return {"Authorization": "Bearer " + token_of(name)}


def model(settings=TOKEN, creds=None, **kwargs) -> Gateway:
    files = gateway.render_gateway(settings, creds or credentials(settings), **kwargs)
    return Gateway(files, gateway.MOUNT_DIR, chroma_ids=CHROMA_IDS)


def concrete(template: str, tenant: str, database: str, collection: str) -> str:
    values = {"tenant": tenant, "database": database, "collection_id": collection,
              "crn": f"{tenant}:{database}:docs", "function_name": "embed_v2", "name": "nightly-job"}
    return "/".join(values[p[1:-1]] if p.startswith("{") else p for p in template.split("/"))


def in_scope(name: str, kind: str, tenant: str, database: str, collection: str) -> bool:
    """What the table says a scoped user may reach, before its role is asked."""
    _, databases = SCOPED[name]
    mine = tenant == "acme" and (not databases or database in databases)
    if kind in (routes.SERVER, "public"):
        return kind == "public"
    if kind == routes.TENANT:
        return tenant == "acme"
    if kind == routes.TENANT_WIDE:
        return tenant == "acme" and not databases
    if kind in (routes.DATABASE, routes.CRN):
        return mine
    if kind == routes.COLLECTION_ID:
        return mine and collection in CHROMA_IDS.get(f"{tenant}/{database}", set())
    raise AssertionError(kind)


def route_of(method: str, path: str) -> str | None:
    """The template of the route a request takes, by method and shape (a placeholder takes one segment)."""
    for m, template, _ in routes.ROUTES:
        parts, given = template.split("/"), path.split("/")
        if m == method and len(parts) == len(given) and all(
                t == g or (t.startswith("{") and g) for t, g in zip(parts, given)):
            return template
    return None


def expected(name: str, method: str, template: str, tenant: str, database: str, collection: str):
    """(status or CHROMA, reason header) for a scoped user's request of a route of the table."""
    role, _ = SCOPED[name]
    taken = route_of(method, concrete(template, tenant, database, collection))
    kind = routes.SCOPES.get((method, taken)) if taken else None
    if kind is None:  # no route of that method and shape: nothing is in a scoped user's scope
        return 403, "scope"
    if kind == routes.IDENTITY:
        return 200, None
    if not in_scope(name, kind, tenant, database, collection):
        return 403, "scope"
    path = concrete(template, tenant, database, collection)
    return (CHROMA, None) if table_allows(roles.BUILTIN_ROLES[role], method, path) else (403, "role")


@pytest.fixture  # per test: mutmut links a function to the tests that call it, fixtures included
def scoped_gateway() -> Gateway:
    return model()


# --- every route, every scoped role, every place ------------------------------------------------


@pytest.mark.parametrize("name", list(SCOPED))
def test_a_scoped_user_reaches_only_its_tenant_and_databases_by_every_route(scoped_gateway, name):
    checked = 0
    for method_of_route, template, _ in routes.ROUTES:
        for tenant, database in PLACES:
            for collection in SAMPLE_IDS:
                path = concrete(template, tenant, database, collection)
                for method in {method_of_route, "GET", "POST"}:
                    want = expected(name, method, template, tenant, database, collection)
                    got = scoped_gateway.answer(Request(method, path, credential(TOKEN, name)))
                    got = (got[0], got[1].get(gateway.REFUSED_HEADER))
                    assert got == want, (name, method, path)
                    checked += 1
    assert checked > len(routes.ROUTES) * len(PLACES) * len(SAMPLE_IDS)


def test_spot_checks_of_the_scope(scoped_gateway):
    """The rules stated by hand, each with the request that would break it."""
    base = "/api/v2/tenants/{t}/databases/{d}/collections"
    cases = [
        # name-keyed and listing routes: the path's tenant and database
        ("rita", "GET", base.format(t="acme", d="prod"), CHROMA),
        ("rita", "GET", base.format(t="beta", d="main"), 403),
        ("rita", "GET", base.format(t="acme", d="other"), 403),
        ("tess", "GET", base.format(t="acme", d="other"), CHROMA),
        ("tom", "GET", base.format(t="acme", d="anything"), CHROMA),
        ("wes", "POST", base.format(t="beta", d="main"), 403),  # no collection made elsewhere
        ("ada", "DELETE", base.format(t="beta", d="main") + "/docs", 403),
        # id-keyed routes: the id must be in the path's tenant and database, whatever the path says
        ("rita", "POST", base.format(t="acme", d="prod") + f"/{ACME_PROD}/get", CHROMA),
        ("rita", "POST", base.format(t="acme", d="prod") + f"/{BETA_MAIN}/get", 403),
        ("rita", "POST", base.format(t="acme", d="prod") + f"/{ACME_OTHER}/get", 403),
        ("tess", "POST", base.format(t="acme", d="prod") + f"/{ACME_OTHER}/query", 403),  # its own, another path
        ("tess", "POST", base.format(t="acme", d="other") + f"/{ACME_OTHER}/query", CHROMA),
        ("wes", "POST", base.format(t="acme", d="prod") + f"/{BETA_MAIN}/add", 403),
        ("ada", "PUT", base.format(t="acme", d="prod") + f"/{BETA_MAIN}", 403),  # rename by id
        ("ada", "POST", base.format(t="acme", d="prod") + f"/{BETA_MAIN}/fork", 403),
        ("ada", "POST", base.format(t="acme", d="prod") + f"/{BETA_MAIN}/search", 403),
        # management: never the server's, databases only for a user of the whole tenant
        ("ada", "POST", "/api/v2/reset", 403), ("tom", "POST", "/api/v2/reset", 403),
        ("ada", "POST", "/api/v2/tenants", 403), ("tom", "POST", "/api/v2/tenants", 403),
        ("ada", "POST", "/api/v2/tenants/acme/databases", 403), ("tom", "POST", "/api/v2/tenants/acme/databases", CHROMA),
        ("ada", "GET", "/api/v2/tenants/acme/databases", 403), ("tom", "GET", "/api/v2/tenants/acme/databases", CHROMA),
        ("tom", "GET", "/api/v2/tenants/beta/databases", 403),
        ("ada", "DELETE", "/api/v2/tenants/acme/databases/prod", 403),
        ("tom", "DELETE", "/api/v2/tenants/acme/databases/prod", CHROMA),
        ("tom", "DELETE", "/api/v2/tenants/beta/databases/main", 403),
        ("rita", "GET", "/api/v2/tenants/acme", CHROMA), ("rita", "GET", "/api/v2/tenants/beta", 403),
        ("rita", "GET", "/api/v2/collections/acme:prod:docs", CHROMA),
        ("rita", "GET", "/api/v2/collections/beta:main:docs", 403),
        ("rita", "GET", "/api/v2/collections/acme:other:docs", 403),
        # and the role still decides inside the scope
        ("rita", "POST", base.format(t="acme", d="prod") + f"/{ACME_PROD}/add", 403),
        ("wes", "DELETE", base.format(t="acme", d="prod") + "/docs", 403),
    ]
    for name, method, path, want in cases:
        assert scoped_gateway.decide(Request(method, path, credential(TOKEN, name))) == want, (name, method, path)


@pytest.mark.parametrize("target", [
    # an id in another form than Chroma writes (Chroma would take each for the same collection)
    f"/api/v2/tenants/acme/databases/prod/collections/{ACME_PROD.upper()}/count",
    f"/api/v2/tenants/acme/databases/prod/collections/{ACME_PROD.replace('-', '')}/count",
    f"/api/v2/tenants/acme/databases/prod/collections/%7B{ACME_PROD}%7D/count",
    f"/api/v2/tenants/acme/databases/prod/collections/urn:uuid:{ACME_PROD}/count",
    # names that only look like the scope's, encoded or longer
    "/api/v2/tenants/ac%6De/databases/prod/collections", "/api/v2/tenants/acme/databases/pro%64/collections",
    "/api/v2/tenants/acmex/databases/prod/collections", "/api/v2/tenants/acme/databases/prodx/collections",
    "/api/v2/tenants/xacme/databases/prod/collections", "/api/v2/tenants/ACME/databases/prod/collections",
    "/api/v2/tenants/acme|database|acme|prod/databases/prod/collections",
    "/api/v2/collections/acme:prod%3Ax:docs", "/api/v2/collections/acme%3Aprod:docs",
    # another tenant in the query string, or a path no route describes
    "/api/v2/tenants/beta/databases/main/collections?tenant=acme&database=prod",
    "/api/v2/tenants/beta/databases/main/collections?/api/v2/tenants/acme/databases/prod/collections",
    f"/api/v2/tenants/acme/databases/prod/collections/{ACME_PROD}/count/x",
    "/api/v2/tenants/acme/databases/prod/collections/docs/extra/words",
])
def test_what_only_resembles_the_scope_is_refused(scoped_gateway, target):
    for method in ("GET", "POST"):
        got = scoped_gateway.answer(Request(method, target, credential(TOKEN, "ada")))
        assert got[0] in (400, 403), (method, target, got)


def test_unscoped_users_decide_as_without_any_scoped_user():
    """Rendering scope rules changes nothing for anyone else: every route, every method."""
    plain_creds = Credentials(roles=dict(roles.BUILTIN_ROLES))
    for name, role in UNSCOPED.items():
        plain_creds = plain_creds.with_user(_user(TOKEN, name, role, None, ()))
    plain, scoped = model(TOKEN, plain_creds), model()
    for name in UNSCOPED:
        for _, template, _ in routes.ROUTES:
            for tenant, database in PLACES:
                path = concrete(template, tenant, database, BETA_MAIN)
                for method in METHODS:
                    request = (method, path, credential(TOKEN, name))
                    assert scoped.answer(Request(*request)) == plain.answer(Request(*request)), request
    for headers in ({}, {"Authorization": "Bearer " + "W" * 40}, {"Authorization": "Bearer " + token_of("rita") + "x"}):
        assert scoped.answer(Request("GET", "/api/v2/tenants/acme/databases/prod/collections", headers)) == (403, {})
        assert scoped.answer(Request("GET", "/api/v2/auth/identity", headers)) == (403, {})


def test_scope_rules_are_written_only_when_a_user_is_scoped():
    plain = Credentials(roles=dict(roles.BUILTIN_ROLES)).with_user(_user(TOKEN, "root", "admin", None, ()))
    text = gateway.render_gateway(TOKEN, plain)[gateway.CONFIG_FILE]
    for word in ("auth_request", "proxy_cache", "chromactl_scope", "chromactl_identity", "by-id"):
        assert word not in text, word
    text = gateway.render_gateway(TOKEN, credentials())[gateway.CONFIG_FILE]
    assert "auth_request /_chromactl/scope;" in text and text.splitlines()[2] == "# Auth: token in Authorization, RBAC, scoped users"


def test_the_id_check_is_internal_and_the_identity_header_comes_from_the_gateway_alone(scoped_gateway):
    for headers in ({}, credential(TOKEN, "root"), credential(TOKEN, "rita")):
        assert scoped_gateway.decide(Request("GET", gateway.SCOPE_CHECK, headers)) in (403, 404)
    forged = {**credential(TOKEN, "root"), "X-Chromactl-Identity": '{"user_id":"x","tenant":"beta"}'}
    assert scoped_gateway.respond(Request("GET", "/api/v2/auth/identity", forged)).status == CHROMA
    forged = {**credential(TOKEN, "rita"), "X-Chromactl-Identity": '{"user_id":"x","tenant":"beta"}'}
    answer = scoped_gateway.respond(Request("GET", "/api/v2/auth/identity", forged))
    assert json.loads(answer.body)["tenant"] == "acme"


@pytest.mark.parametrize("name, databases", [("rita", ["prod"]), ("tess", ["prod", "other"]), ("tom", ["*"])])
def test_a_scoped_user_is_told_its_tenant_and_databases(scoped_gateway, name, databases):
    answer = scoped_gateway.respond(Request("GET", "/api/v2/auth/identity", credential(TOKEN, name)))
    assert answer.status == 200 and json.loads(answer.body) == {"user_id": name, "tenant": "acme",
                                                                "databases": databases}


def test_the_scope_refusal_says_why_in_its_message_and_header(scoped_gateway):
    answer = scoped_gateway.respond(Request("GET", "/api/v2/tenants/beta", credential(TOKEN, "rita")))
    assert (answer.status, answer.headers) == (403, {gateway.REFUSED_HEADER: "scope"})
    assert json.loads(answer.body) == {"error": "AuthError",
                                       "message": "Forbidden: outside the tenant and databases of this user"}
    by_id = scoped_gateway.respond(Request("GET", f"/api/v2/tenants/acme/databases/prod/collections/{BETA_MAIN}/count",
                                           credential(TOKEN, "rita")))
    assert (by_id.status, by_id.headers, by_id.body) == (answer.status, answer.headers, answer.body)


@pytest.mark.parametrize("settings", [X_TOKEN, BASIC], ids=["x-chroma-token", "basic"])
def test_scoping_under_the_other_credentials(settings):
    g = model(settings)
    mine = f"/api/v2/tenants/acme/databases/prod/collections/{ACME_PROD}/get"
    theirs = f"/api/v2/tenants/acme/databases/prod/collections/{BETA_MAIN}/get"
    assert g.decide(Request("POST", mine, credential(settings, "rita"))) == CHROMA
    assert g.answer(Request("POST", theirs, credential(settings, "rita"))) == (403, {gateway.REFUSED_HEADER: "scope"})
    assert g.answer(Request("GET", "/api/v2/tenants/beta", credential(settings, "rita"))) == \
        (403, {gateway.REFUSED_HEADER: "scope"})
    if settings.auth == "basic":
        # A wrong password learns nothing of the scope: the same 401 inside and outside it.
        wrong = {"Authorization": "Basic " + base64.b64encode(b"rita:wrong-password").decode()}
        for path in (mine, theirs, "/api/v2/tenants/beta", "/api/v2/auth/identity"):
            assert g.answer(Request("POST" if path.endswith("get") else "GET", path, wrong)) == (401, {}), path


def test_scoping_needs_rbac_and_names_chroma_accepts():
    no_rbac = resolve_settings({"rbac": False}, None, folder_name="p")
    scoped = Credentials().with_user(User("rita", tokens=("R" * 40,), tenant="acme"))
    with pytest.raises(ValueError, match="^refusing to scope users without RBAC: the role decides inside the scope$"):
        gateway.render_gateway(no_rbac, scoped)
    # The message names what is wrong, as the operator wrote it.
    for tenant, databases, wrong in (('ac"me', (), "tenant 'ac\"me'"), ("acme", ("pr;od",), "database 'pr;od'"),
                                     ("a", (), "tenant 'a'"), ("acme", ("prod", "$http_x"), "database '$http_x'")):
        what = wrong.split()[0]
        hostile = Credentials(roles=dict(roles.BUILTIN_ROLES)).with_user(
            User("rita", "reader", tokens=("R" * 40,), tenant=tenant, databases=databases))
        with pytest.raises(ValueError, match=re.escape(f"refusing to write {wrong} into nginx.conf: a {what} name is 3-63")):
            gateway.render_gateway(TOKEN, hostile)


# --- the audit trail --------------------------------------------------------------------------


def test_every_request_gets_one_audit_line_naming_who_did_what_where(scoped_gateway):
    base = "/api/v2/tenants/acme/databases/prod/collections"
    wrong = {"Authorization": "Bearer " + "W" * 40}
    cases = [
        (Request("POST", f"{base}/{ACME_PROD}/add", credential(TOKEN, "wes")),
         dict(user="wes", role="writer", action="collection:add", tenant="acme", database="prod",
              collection=ACME_PROD, status=200, reason="")),
        (Request("DELETE", f"{base}/docs", credential(TOKEN, "root")),
         dict(user="root", role="admin", action="collection:delete_collection", collection="docs", reason="")),
        (Request("POST", f"{base}/{ACME_PROD}/add", credential(TOKEN, "rita")),
         dict(user="rita", role="reader", status=403, reason="role")),
        (Request("POST", f"{base}/{BETA_MAIN}/get", credential(TOKEN, "rita")),
         dict(user="rita", role="reader", action="collection:get", collection=BETA_MAIN, status=403, reason="scope")),
        (Request("GET", "/api/v2/tenants/beta/databases/main/collections", credential(TOKEN, "rita")),
         dict(tenant="beta", database="main", action="db:list_collections", status=403, reason="scope")),
        (Request("GET", base, {}), dict(user="", role="", status=403, reason="no_credentials")),
        (Request("GET", base, wrong), dict(user="unknown", role="", status=403, reason="bad_credentials")),
        (Request("GET", "/api/v2/heartbeat", credential(TOKEN, "root")),
         dict(user="", role="", action="system:heartbeat", status=200, reason="")),
        (Request("GET", "/api/v2/auth/identity", credential(TOKEN, "rita")),
         dict(user="rita", action="auth:identity", status=200)),
        (Request("GET", "/api/v2/nothing/here", credential(TOKEN, "root")),
         dict(action="unknown", status=403, reason="role")),
        (Request("POST", "/api/v2/reset", credential(TOKEN, "ada")),
         dict(user="ada", role="admin", action="system:reset", status=403, reason="scope")),
    ]
    for request, fields in cases:
        line = scoped_gateway.audit(request)
        assert {k: line[k] for k in fields} == fields, (request.method, request.target, line)
        assert line["audit"] == 1 and line["method"] == request.method and line["client"] == "192.0.2.7"


def test_no_secret_reaches_the_audit_line():
    for settings in (TOKEN, X_TOKEN, BASIC):
        g = model(settings)
        for name in ("rita", "root"):
            headers = credential(settings, name)
            for request in (Request("GET", "/api/v2/tenants/acme", headers),
                            Request("GET", "/api/v2/auth/identity?token=x", headers)):
                text = json.dumps(g.audit(request))
                assert token_of(name) not in text and password_of(name) not in text
                assert list(headers.values())[0] not in text
        # A failed basic login names the user only when it is one the gateway knows.
        if settings.auth == "basic":
            for claimed, shown in (("rita", "rita"), ("rita-password-24-chars-x", "unknown")):
                sent = {"Authorization": "Basic " + base64.b64encode(f"{claimed}:wrong".encode()).decode()}
                line = g.audit(Request("GET", "/api/v2/tenants/acme", sent))
                assert (line["user"], line["role"], line["status"], line["reason"]) == \
                    (shown, "", 401, "bad_credentials")


def test_audit_lines_stay_json_whatever_the_path():
    g = model()
    for target in ('/api/v2/tenants/a"b/databases', "/api/v2/tenants/a%22b%5C/x", "/api/v2/tenants/\u00e9/x",
                   '/api/v2/"},"user":"root"', "/api/v2/tenants/acme?x=%00"):
        line = g.audit(Request("GET", target, credential(TOKEN, "rita")))
        assert line["user"] == "rita" and line["status"] in (200, 400, 403), (target, line)


# --- a real nginx, where one is installed ---------------------------------------------------------


class _Chroma(BaseHTTPRequestHandler):
    """Chroma's stand-in: its by-id route answers within the path's tenant and database
    (CHROMA_IDS), everything else 299 (proxied to Chroma)."""

    def _answer(self):
        parts = self.path.split("?")[0].split("/")
        status = 299
        if len(parts) == 10 and parts[8] == "by-id" and self.command == "GET":  # /api/v2/tenants/T/databases/D/...
            status = 200 if parts[9] in CHROMA_IDS.get(f"{parts[4]}/{parts[6]}", set()) else 404
        body = b'{"upstream":"chroma"}'
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _answer

    def log_message(self, *args):
        pass


@contextmanager
def real_nginx(settings, creds):
    """A real nginx with the rendered configuration (its access log in a file) in front of the
    stand-in: (port, the access log's path)."""
    binary = nginx_binary()
    chroma = ThreadingHTTPServer(("127.0.0.1", 0), _Chroma)
    threading.Thread(target=chroma.serve_forever, daemon=True).start()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    files = gateway.render_gateway(settings, creds, upstream=f"127.0.0.1:{chroma.server_port}", listen=port)
    folder = Path(tempfile.mkdtemp(prefix="cg"))
    log = folder / "access.log"
    files = {n: t.replace("access_log /dev/stdout", f"access_log {log}") for n, t in files.items()}
    try:
        with running_nginx(binary, files, port, folder):
            yield port, log
    finally:
        chroma.shutdown()


def _send(port: int, request: Request) -> tuple[str | int, dict[str, str], str]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.putrequest(request.method, request.target, skip_accept_encoding=True)
        for name, value in request.headers.items():
            connection.putheader(name, value)
        connection.endheaders()
        response = connection.getresponse()
        body = response.read().decode()
        reason = response.getheader(gateway.REFUSED_HEADER)
        return (CHROMA if response.status == 299 else response.status,
                {gateway.REFUSED_HEADER: reason} if reason is not None else {}, body)
    finally:
        connection.close()


# What the model cannot know: when, from where, how long, how many bytes.
_MEASURED = ("time", "ts", "client", "seconds", "bytes_in", "bytes_out")


@pytest.mark.parametrize("settings", [TOKEN, BASIC], ids=["token", "basic"])
def test_a_real_nginx_scopes_and_logs_as_the_model_does(settings):
    creds = credentials(settings)
    expected_model = model(settings, creds)
    expected_model.chroma_status = 299  # the stand-in's
    base = "/api/v2/tenants/{t}/databases/{d}/collections"
    # (The by-id route itself is left out: the stand-in answers it as Chroma would, not 299.)
    requests = [Request(method, concrete(template, t, d, c), credential(settings, name))
                for name in ("rita", "tom", "root") for method, template, _ in routes.ROUTES if "by-id" not in template
                for t, d in PLACES for c in (ACME_PROD, BETA_MAIN)]
    wrong = {"Authorization": "Basic " + base64.b64encode(b"rita:wrong").decode()} if settings.auth == "basic" \
        else {"Authorization": "Bearer " + "W" * 40}
    requests += [Request("GET", "/api/v2/auth/identity", credential(settings, n)) for n in ("rita", "tom", "tess")]
    requests += [Request("POST", base.format(t="acme", d="prod") + f"/{BETA_MAIN}/get", wrong),
                 Request("GET", base.format(t="acme", d="prod"), {}),
                 Request("GET", "/api/v2/tenants/ac%6De/databases/prod/collections", credential(settings, "rita")),
                 Request("GET", f"{base.format(t='acme', d='prod')}/{ACME_PROD.upper()}/count",
                         credential(settings, "rita")),
                 Request("GET", "/api/v2/heartbeat", {}), Request("GET", gateway.SCOPE_CHECK, credential(settings, "rita")),
                 Request("GET", "/api/v2/auth/identity", {**credential(settings, "rita"), "X-Chromactl-Identity": "{}"})]
    with real_nginx(settings, creds) as (port, log):
        mismatches = []
        for r in requests:
            got = _send(port, r)
            want = expected_model.respond(r)
            body = want.body if want.status != CHROMA else got[2]
            if got != (want.status, want.headers, body if want.body is not None or got[0] == CHROMA else got[2]):
                mismatches.append((r.method, r.target, got, (want.status, want.headers, want.body)))
        assert not mismatches, (mismatches[:5], len(mismatches))
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(lines) == len(requests)  # one line per request: nothing from the gateway's own servers
    # Workers write their buffers in turn: match lines to requests by what identifies them.
    logged = sorted(tuple(sorted((k, v) for k, v in line.items() if k not in _MEASURED)) for line in lines)
    modelled = sorted(tuple(sorted((k, v) for k, v in expected_model.audit(
        Request(r.method, r.target, r.headers)).items() if k not in _MEASURED)) for r in requests)
    assert logged == modelled


# --- the audit trail of every configuration, through a real nginx -----------------------------------


def unscoped_credentials(settings) -> Credentials:
    """root (admin) and ursula (reader), no one scoped; without RBAC, users without roles."""
    creds = Credentials(roles=dict(roles.BUILTIN_ROLES) if settings.rbac else None)
    for name, role in UNSCOPED.items():
        creds = creds.with_user(_user(settings, name, role if settings.rbac else None, None, ()))
    return creds


def wrong_secret(settings) -> dict[str, str]:
    if settings.auth == "basic":
        return {"Authorization": "Basic " + base64.b64encode(b"nobody:wrong-password").decode()}
    if settings.token_header == "X-Chroma-Token":
        return {"X-Chroma-Token": "W" * 40}
    return {"Authorization": "Bearer " + "W" * 40}


def audit_expectations(settings) -> list[tuple[Request, dict]]:
    """Requests to a gateway without scoped users, each with what its audit line says."""
    root, ursula, wrong = credential(settings, "root"), credential(settings, "ursula"), wrong_secret(settings)
    refused = 401 if settings.auth == "basic" else 403
    tenant = "/api/v2/tenants/acme"
    cases = [
        # Who: a user the gateway knows, with its role; a stranger "unknown"; no credentials, no one.
        (Request("GET", tenant, root), dict(user="root", role="admin", status=299, reason="")),
        (Request("GET", tenant, {}), dict(user="", role="", status=refused, reason="no_credentials")),
        (Request("GET", tenant, wrong), dict(user="unknown", role="", status=refused, reason="bad_credentials")),
        # Public routes check no credentials, and name no one, whatever was sent.
        (Request("GET", "/api/v2/heartbeat", root), dict(user="", role="", action="system:heartbeat", status=299)),
        # A path refused before any credential is checked: a stranger is given no role.
        (Request("POST", "/api/v2//reset", wrong), dict(user="unknown", role="", status=400, reason="")),
        # Where: the tenant, database and collection the route names; empty where it names none.
        (Request("GET", "/api/v2/collections/acme:prod:docs", root),
         dict(action="collection:get_collection", tenant="acme", database="prod", collection="docs")),
        (Request("POST", "/api/v2/reset", root), dict(action="system:reset", tenant="", database="", collection="")),
        (Request("GET", tenant, ursula), dict(action="tenant:get_tenant", tenant="acme", database="", collection="")),
        (Request("GET", tenant + "/databases/prod/collections", ursula),
         dict(action="db:list_collections", tenant="acme", database="prod", collection="")),
    ]
    if settings.rbac:
        cases.append((Request("POST", "/api/v2/reset", ursula), dict(user="ursula", role="reader", status=403,
                                                                      reason="role")))
    else:  # every user may do everything: an admin
        cases.append((Request("POST", "/api/v2/reset", ursula), dict(user="ursula", role="admin", status=299,
                                                                      reason="")))
    if settings.auth == "token":  # a token in the header the gateway does not read is no credential
        other = {"X-Chroma-Token": token_of("root")} if settings.token_header == "Authorization" \
            else {"Authorization": "Bearer " + token_of("root")}
        cases.append((Request("GET", tenant, other), dict(user="", role="", status=403, reason="no_credentials")))
    return cases


@pytest.mark.parametrize("settings", [TOKEN, TOKEN_PLAIN, X_TOKEN, BASIC, BASIC_PLAIN],
                         ids=["token", "token-plain", "x-chroma-token", "basic", "basic-plain"])
def test_a_real_nginx_audits_who_where_and_why_in_every_configuration(settings):
    creds = unscoped_credentials(settings)
    cases = audit_expectations(settings)
    # Each request tagged by its User-Agent (the line's "agent"): workers write their lines in turn.
    requests = [Request(r.method, r.target, {**r.headers, "User-Agent": f"case-{i}"}) for i, (r, _) in enumerate(cases)]
    with real_nginx(settings, creds) as (port, log):
        for request in requests:
            _send(port, request)
    logged = {line["agent"]: line for line in map(json.loads, log.read_text().splitlines())}
    expected_model = model(settings, creds)
    expected_model.chroma_status = 299  # the stand-in's
    for request, (_, fields) in zip(requests, cases):
        line = logged[request.headers["User-Agent"]]
        assert {k: line[k] for k in fields} == fields, (request.method, request.target, request.headers, line)
        modelled = expected_model.audit(Request(request.method, request.target, request.headers))
        assert {k: v for k, v in line.items() if k not in _MEASURED} == \
            {k: v for k, v in modelled.items() if k not in _MEASURED}, (request.method, request.target)


def test_a_real_nginx_limits_a_costly_users_flood_and_audits_it_as_limited():
    """Beyond its burst, an address trying a user of a costly hash gets 429 before any bcrypt;
    the audit trail says why (the model has no clock: it is told the status)."""
    creds = Credentials(roles=dict(roles.BUILTIN_ROLES)).with_user(
        User("wes", "writer", password_hash=hash_password(password_of("wes"), 8)))
    sent = {"Authorization": "Basic " + base64.b64encode(f"wes:{password_of('wes')}".encode()).decode()}
    statuses = []
    with real_nginx(BASIC, creds) as (port, log):
        for i in range(3 * gateway.COSTLY_BURST):
            statuses.append(_send(port, Request("GET", "/api/v2/tenants/acme", {**sent, "User-Agent": f"case-{i}"}))[0])
            if statuses.count(429) == 3:
                break
    assert statuses[:gateway.COSTLY_BURST + 1] == [CHROMA] * (gateway.COSTLY_BURST + 1) and 429 in statuses, statuses
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    limited = [line for line in lines if line["status"] == 429]
    assert len(limited) == statuses.count(429)
    expected_model = model(BASIC, creds)
    for line in limited:
        assert (line["user"], line["role"], line["reason"]) == ("wes", "", "limited"), line
        modelled = expected_model.audit(Request("GET", "/api/v2/tenants/acme", sent, status=429))
        assert {k: v for k, v in line.items() if k not in _MEASURED + ("agent",)} == \
            {k: v for k, v in modelled.items() if k not in _MEASURED + ("agent",)}
