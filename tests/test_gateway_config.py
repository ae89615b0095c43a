"""The gateway's decisions, read from the nginx.conf chromactl renders, without Docker.

tests/nginx_model.py parses the rendered text and decides requests the way nginx does (its
`map` semantics, PCRE anchors, locations, auth_basic); where an nginx binary is installed, the
same configurations pass `nginx -t` and a real nginx answers a sample of requests exactly as
the model does. The expectations come from the route table (chromactl/routes.py) and the
roles, plus spot checks stated by hand."""

from __future__ import annotations

import base64
from contextlib import contextmanager
import http.client
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import pytest

from chromactl import gateway, roles, routes, tls
from chromactl.credentials import HTPASSWD_FILE, Credentials, User, hash_generated, hash_password, new_credentials
from chromactl.routes import AUTHENTICATED, PUBLIC_ROUTES, ROUTES
from chromactl.settings import resolve_settings
from conftest import require
from nginx_model import CHROMA, ConfError, Gateway, Request, parse, pcre

TOKEN_RBAC = resolve_settings({}, None, folder_name="p")
TOKEN_PLAIN = resolve_settings({"rbac": False}, None, folder_name="p")
X_TOKEN_RBAC = resolve_settings({"token_header": "X-Chroma-Token"}, None, folder_name="p")
BASIC_RBAC = resolve_settings({"auth": "basic"}, None, folder_name="p")
BASIC_PLAIN = resolve_settings({"auth": "basic", "rbac": False}, None, folder_name="p")

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
# Values for the templates' placeholders: none equal to a fixed segment of any route.
SAMPLE = {"tenant": "acme", "database": "main.db", "collection_id": "3f0c1a2e-9b7d-4c55-8e1f-0a1b2c3d4e5f",
          "crn": "acme:main.db:docs", "function_name": "embed_v2", "name": "nightly-job"}
# Custom roles beside the built-in ones: a single action, and none at all.
ROLES = {**roles.BUILTIN_ROLES, "counter": ("collection:count",), "nothing": ()}
# The maps of the audit trail, in every configuration (test_audit_* below check what they say).
AUDIT_MAPS = {"$chromactl_route", "$chromactl_action", "$chromactl_route_kind", "$chromactl_tenant",
              "$chromactl_database", "$chromactl_collection", "$chromactl_sent_credentials", "$chromactl_audit_user",
              "$chromactl_reason", "$chromactl_audit_role"}
# One user per role, each with a token of letters and digits.
TOKENS = {role: f"{role.replace('-', '')}Tok3n{i:02d}".ljust(40, "x") for i, role in enumerate(ROLES)}


def concrete(template: str) -> str:
    return "/".join(SAMPLE[p[1:-1]] if p.startswith("{") else p for p in template.split("/"))


def table_allows(role_actions: tuple[str, ...], method: str, path: str) -> bool:
    """What the route table says: a route of that method and shape whose actions the role has."""
    for m, template, allowed_by in ROUTES:
        parts, given = template.split("/"), path.split("/")
        same_shape = len(parts) == len(given) and all(
            t == g or (t.startswith("{") and g and "/" not in g) for t, g in zip(parts, given))
        if m == method and same_shape and (AUTHENTICATED in allowed_by or set(allowed_by) & set(role_actions)):
            return True
    return False


def user_name(role: str) -> str:
    return f"user-{role}"


def token_credentials(settings) -> Credentials:
    creds = Credentials(roles=dict(ROLES) if settings.rbac else None)
    for role, token in TOKENS.items():
        creds = creds.with_user(User(user_name(role), role if settings.rbac else None, tokens=(token,)))
    return creds


def model(settings, creds, **kwargs) -> Gateway:
    return Gateway(gateway.render_gateway(settings, creds, **kwargs), gateway.MOUNT_DIR)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": "Bearer " + token}


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.fixture  # per test: mutmut links a function to the tests that call it, fixtures included
def token_gateway() -> Gateway:
    return model(TOKEN_RBAC, token_credentials(TOKEN_RBAC))


# --- the model itself ---------------------------------------------------------------------


def test_the_model_reads_nginx_syntax_and_pcre_as_nginx_does():
    top = parse('a "x\\"y" \'z\' b\\;c;  # comment\nblock { inner "\\x41\\z"; }')
    assert top[0].name == "a" and top[0].args == ['x"y', "z", "b\\;c"]  # \; does not end it, and stays
    assert top[1].block[0].args == ["\\x41\\z"]  # PCRE's escapes reach PCRE untouched
    for broken in ('a "unclosed;', "a { b;", "a; }", "a", '"x"y;'):
        with pytest.raises(ConfError):
            parse(broken)
    assert pcre(r"^ab\z").search("ab") and not pcre(r"^ab\z").search("ab\n")
    assert pcre(r"^ab$").search("ab\n")  # PCRE's $ also matches before a final newline
    assert pcre(r"^\x41\x2e").search("A.") and not pcre(r"^\x41\x2e").search("Ab")
    with pytest.raises(ConfError):
        pcre(r"\d")


def test_map_semantics_strings_ignore_case_regexes_in_order_empty_never_matches_a_regex():
    conf = """http {
        map $http_x $out { default "d"; "Exact" e; "~^E" first; "~^Ex" second; "~*^y" caseless; }
        map $http_y $empty { "~^" regex; }
        server { listen 80; location / { return 200; } }
    }"""
    g = Gateway({"nginx.conf": conf}, "/etc")
    value = lambda header: g.variable("$out", Request("GET", "/", {"X": header}))  # noqa: E731
    assert value("eXACT") == "e" and value("Exa") == "first" and value("Y") == "caseless" and value("") == "d"
    assert g.variable("$empty", Request("GET", "/", {"Y": ""})) == ""


# --- RBAC: every role, every route ----------------------------------------------------------


@pytest.mark.parametrize("role", list(ROLES))
def test_every_role_reaches_exactly_the_routes_of_its_actions(token_gateway, role):
    headers = bearer(TOKENS[role])
    checked = 0
    for _, template, _ in ROUTES:
        path = concrete(template)
        for method in METHODS:
            expected = CHROMA if table_allows(ROLES[role], method, path) else 403
            assert token_gateway.decide(Request(method, path, headers)) == expected, (role, method, path)
            checked += 1
    assert checked == len(ROUTES) * len(METHODS)


def test_spot_checks_of_the_roles(token_gateway):
    c = concrete("/api/v2/tenants/{tenant}/databases/{database}/collections/{collection_id}")
    cases = [
        ("reader", "POST", c + "/query", CHROMA), ("reader", "POST", c + "/add", 403),
        ("reader", "DELETE", c, 403), ("writer", "POST", c + "/add", CHROMA), ("writer", "DELETE", c, 403),
        ("admin", "DELETE", c, CHROMA), ("admin", "POST", "/api/v2/reset", CHROMA), ("writer", "POST", "/api/v2/reset", 403),
        ("admin", "POST", c + "/fork", 403), ("admin", "PATCH", "/api/v2/tenants/acme", 403),
        ("chromactl-probe", "GET", "/api/v2/tenants/acme/databases/main.db/collections", CHROMA),
        ("chromactl-probe", "POST", c + "/get", 403), ("counter", "GET", c + "/count", CHROMA),
        ("counter", "GET", "/api/v2/tenants/acme", 403), ("nothing", "GET", "/api/v2/auth/identity", CHROMA),
        ("nothing", "GET", "/api/v2/tenants/acme", 403),
    ]
    for role, method, path, expected in cases:
        assert token_gateway.decide(Request(method, path, bearer(TOKENS[role]))) == expected, (role, method, path)


@pytest.mark.parametrize("path", [
    "/api/v2/unknown", "/api/v2", "/", "/api/v2/tenants/acme/databases/main.db/collections/c/add/more",
    "/api/v2/tenants/acme/extra", "/x/api/v2/reset", "/api/v2/reset/", "/api/v2/resetX", "/API/V2/RESET",
    "/api/v2/tenants//databases",
])
def test_what_no_route_describes_is_refused_by_default_even_for_admin(token_gateway, path):
    for method in METHODS:
        assert token_gateway.decide(Request(method, path, bearer(TOKENS["admin"]))) in (400, 403), (method, path)


def test_the_rbac_map_refuses_by_default_and_only_chroma_is_reached():
    g = model(TOKEN_RBAC, token_credentials(TOKEN_RBAC))
    backend = g.maps["$chromactl_backend"]
    assert backend.default == "$chromactl_refusal" and not backend.exact
    assert {value for _, value in backend.regexes} == {"chroma"}
    refusal_map = g.maps["$chromactl_refusal"]
    assert refusal_map.source == "$chromactl_role" and refusal_map.exact == {"": "chromactl_refused"}
    assert refusal_map.default == "chromactl_refused_role" and not refusal_map.regexes
    assert g.upstreams["chroma"].child("server").args[0] == gateway.UPSTREAM
    assert g.decide(Request("GET", "/api/v2/auth/identity", {})) == 403  # no token at all
    refusal = g.unix_servers[g.upstreams["chromactl_refused"].child("server").args[0]].child("location")
    assert refusal.child("return").args == ["403", '{"error":"AuthError","message":"Forbidden"}']  # as Chroma 0.6
    assert refusal.children("add_header") == []
    assert g.decide(Request("GET", "/api/v2/auth/identity", bearer("f" * 40))) == 403
    with_reason = g.unix_servers[g.upstreams["chromactl_refused_role"].child("server").args[0]].child("location")
    assert with_reason.child("return").args == refusal.child("return").args  # the same body
    assert with_reason.child("add_header").args == ["X-Chromactl-Refused", "role", "always"]


@pytest.mark.parametrize("settings", [TOKEN_RBAC, X_TOKEN_RBAC, TOKEN_PLAIN], ids=["rbac", "x-chroma-token", "plain"])
def test_only_a_caller_who_authenticated_learns_that_the_role_refused(settings):
    """The refusal's reason (a header) goes to a caller whose secret was right and whose role
    lacks the action; strangers and wrong secrets get the very same refusal as ever."""
    g = model(settings, token_credentials(settings))
    header = "X-Chroma-Token" if settings.token_header == "X-Chroma-Token" else "Authorization"

    def creds(token):
        return {header: token if header == "X-Chroma-Token" else "Bearer " + token}

    reset = Request("POST", "/api/v2/reset", creds(TOKENS["reader"]))
    if settings.rbac:
        assert g.answer(reset) == (403, {"X-Chromactl-Refused": "role"})
        assert g.answer(Request("GET", "/api/v2/tenants/acme", creds(TOKENS["nothing"]))) == \
            (403, {"X-Chromactl-Refused": "role"})
    else:
        assert g.answer(reset) == (CHROMA, {})  # without RBAC every user may do everything
    for headers in ({}, creds("W" * 40), creds(TOKENS["reader"] + "x"), creds(TOKENS["reader"][:-1])):
        assert g.answer(Request("POST", "/api/v2/reset", headers)) == (403, {}), headers
        assert g.answer(Request("GET", "/api/v2/auth/identity", headers)) == (403, {}), headers
    assert g.answer(Request("GET", "/api/v2/auth/identity", creds(TOKENS["reader"]))) == (CHROMA, {})


def test_under_basic_auth_the_reason_needs_the_right_password():
    creds = (new_credentials(BASIC_RBAC)
             .with_user(User("rita", "reader", password_hash=hash_generated("rita-password-24-chars-x", BASIC_RBAC))))
    g = model(BASIC_RBAC, creds)
    reset = "/api/v2/reset"
    assert g.answer(Request("POST", reset, basic("rita", "rita-password-24-chars-x"))) == \
        (403, {"X-Chromactl-Refused": "role"})
    for headers in ({}, basic("rita", "rita-password-24-chars-y"), basic("bob", "rita-password-24-chars-x")):
        assert g.answer(Request("POST", reset, headers)) == (401, {}), headers


def test_a_user_whose_role_has_no_rules_or_is_unknown_is_refused():
    creds = Credentials(roles={"reader": roles.READER}).with_user(User("ghost", "vanished", tokens=("G" * 40,)))
    g = model(TOKEN_RBAC, creds)
    assert g.decide(Request("GET", "/api/v2/auth/identity", bearer("G" * 40))) == 403
    assert g.decide(Request("GET", "/api/v2/tenants/acme", bearer("G" * 40))) == 403


@pytest.mark.parametrize("method, path", PUBLIC_ROUTES)
def test_public_routes_answer_get_and_head_only_without_credentials(method, path):
    for settings in (TOKEN_RBAC, TOKEN_PLAIN, BASIC_RBAC, BASIC_PLAIN):
        g = model(settings, token_credentials(TOKEN_RBAC) if settings.auth == "token" else new_credentials(settings))
        assert g.decide(Request(method, path)) == CHROMA
        assert g.decide(Request("HEAD", path)) == CHROMA
        for other in ("POST", "PUT", "DELETE", "PATCH"):
            assert g.decide(Request(other, path)) == 403
        assert g.decide(Request("GET", path + "/x")) in (401, 403)  # not public: no exact match


def test_raw_paths_nginx_and_chroma_could_read_differently_are_refused_first(token_gateway):
    admin = bearer(TOKENS["admin"])
    for target in ("/api/v2/tenants/acme/%2E%2E/reset", "/api/v2//reset", "/api/v2/../v2/reset",
                   "/api/v2/heartbeat%0A", "/api/v2/tenants/acme%2fx", "/api/v2/tenants/a%5Cb", "/api/v2/x%7F"):
        assert token_gateway.decide(Request("POST", target, admin)) == 400, target
    assert token_gateway.decide(Request("GET", "/api/v2/tenants/acme?x=..%2F", admin)) == CHROMA  # the query is not the path


# --- tokens: exact, anchored, case-sensitive --------------------------------------------------


def test_tokens_match_exactly(token_gateway):
    token = TOKENS["admin"]
    identity = "/api/v2/auth/identity"
    assert token_gateway.decide(Request("GET", identity, bearer(token))) == CHROMA
    for wrong in (token + "x", token[:-1], token[1:], "x" + token, token.upper(), token.swapcase(),
                  token + token, token[:16]):
        assert token_gateway.decide(Request("GET", identity, bearer(wrong))) == 403, wrong
    for header in ("bearer " + token, "Bearer  " + token, "Bearer" + token, token, "Basic " + token,
                   "Bearer " + token + "anything", "Bearer " + token + "\tx"):
        assert token_gateway.decide(Request("GET", identity, {"Authorization": header})) == 403, header
    assert token_gateway.decide(Request("GET", identity, {"X-Chroma-Token": token})) == 403  # the other header


def test_a_token_that_is_a_prefix_of_another_users_token_is_only_its_own():
    short, long = "SharedPrefix0123", "SharedPrefix0123AndMore"
    creds = (Credentials(roles=dict(roles.BUILTIN_ROLES)).with_user(User("rita", "reader", tokens=(short,)))
             .with_user(User("ada", "admin", tokens=(long,))))
    for order in (creds, Credentials(roles=creds.roles, users=creds.users[::-1])):
        g = model(TOKEN_RBAC, order)
        reset = "/api/v2/reset"
        assert g.decide(Request("POST", reset, bearer(long))) == CHROMA
        assert g.decide(Request("POST", reset, bearer(short))) == 403
        assert g.decide(Request("GET", "/api/v2/tenants/acme", bearer(short))) == CHROMA
        assert g.variable("$chromactl_user", Request("GET", "/", bearer(short))) == "rita"
        assert g.variable("$chromactl_user", Request("GET", "/", bearer(long))) == "ada"
        assert g.variable("$chromactl_user", Request("GET", "/", bearer(short + "And"))) == ""


# Every character Chroma accepts in a token, regex and nginx syntax included.
PUNCTUATION_TOKEN = "a.b*c+d?e(f)g[h]i{j}k|l^m$n\\o/p\"q'r;s#t`u~v,w<x>y=z!@%&:-_0123"


def test_tokens_with_any_punctuation_are_escaped_and_match_only_themselves():
    creds = (Credentials(roles=dict(roles.BUILTIN_ROLES)).with_user(User("p", "admin", tokens=(PUNCTUATION_TOKEN,)))
             .with_user(User("q", "reader", tokens=('"; } default chroma; map $x $y { #abcdefgh',))))
    files = gateway.render_gateway(TOKEN_RBAC, creds)
    g = Gateway(files, gateway.MOUNT_DIR)
    assert list(g.maps["$chromactl_user"].exact) == [] and g.maps["$chromactl_user"].default == ""
    assert len(g.maps["$chromactl_user"].regexes) == 2  # nothing broke out of the map
    assert set(g.maps) == {"$chromactl_user", "$chromactl_role", "$chromactl_refusal", "$chromactl_backend",
                          "$chromactl_limit_key"} | AUDIT_MAPS
    assert g.decide(Request("POST", "/api/v2/reset", bearer(PUNCTUATION_TOKEN))) == CHROMA
    assert g.decide(Request("GET", "/api/v2/tenants/a", bearer('"; } default chroma; map $x $y { #abcdefgh'))) == CHROMA
    for i, c in enumerate(PUNCTUATION_TOKEN):  # each metacharacter stands for itself only
        if not c.isalnum():
            changed = PUNCTUATION_TOKEN[:i] + "Z" + PUNCTUATION_TOKEN[i + 1:]
            assert g.decide(Request("GET", "/api/v2/auth/identity", bearer(changed))) == 403, c
    conf = files[gateway.CONFIG_FILE]
    assert PUNCTUATION_TOKEN not in conf and "default chroma;" not in conf
    user_map = [line.split() for line in conf.splitlines() if "~^Bearer" in line]
    assert len(user_map) == 2
    for key, _ in user_map:  # letters and digits as they are, everything else \xNN
        assert re.fullmatch(r'"~\^(?:[A-Za-z0-9]|\\x[0-9a-f]{2})*\\z"', key), key


def test_x_chroma_token_header_takes_the_bare_token():
    g = model(X_TOKEN_RBAC, token_credentials(X_TOKEN_RBAC))
    token = TOKENS["reader"]
    assert g.decide(Request("GET", "/api/v2/tenants/acme", {"X-Chroma-Token": token})) == CHROMA
    assert g.decide(Request("GET", "/api/v2/tenants/acme", {"X-Chroma-Token": "Bearer " + token})) == 403
    assert g.decide(Request("GET", "/api/v2/tenants/acme", bearer(token))) == 403
    assert g.decide(Request("GET", "/api/v2/tenants/acme", {"X-Chroma-Token": token + "x"})) == 403


def test_without_rbac_every_known_token_reaches_everything_and_nothing_else_does():
    g = model(TOKEN_PLAIN, token_credentials(TOKEN_PLAIN))
    fork = concrete("/api/v2/tenants/{tenant}/databases/{database}/collections/{collection_id}") + "/fork"
    for token in TOKENS.values():
        for method, path in (("POST", "/api/v2/reset"), ("POST", fork), ("GET", "/api/v2/anything")):
            assert g.decide(Request(method, path, bearer(token))) == CHROMA
    for headers in ({}, bearer(""), bearer("nobody-has-this-token"), bearer(TOKENS["admin"] + "x")):
        assert g.decide(Request("GET", "/api/v2/auth/identity", headers)) == 403
    assert "$chromactl_role" not in g.maps


# --- basic auth -------------------------------------------------------------------------------


@pytest.fixture  # per test: mutmut links a function to the tests that call it, fixtures included
def basic_files():
    creds = new_credentials(BASIC_RBAC)
    creds = creds.with_user(User("ada", "admin", password_hash=hash_generated("ada-password-24-chars-xx", BASIC_RBAC)))
    creds = creds.with_user(User("rita", "reader", password_hash=hash_password("rita-password-16+", 4)))
    creds = creds.with_user(User("wes", "writer", password_hash=hash_password("wes-password-16-chars", 7)))
    creds = creds.with_user(User("ari", "reader", password_hash=hash_password("ari-password-16-chars", 8)))
    return creds, gateway.render_gateway(BASIC_RBAC, creds)


def test_basic_auth_checks_the_password_before_any_role(basic_files):
    creds, files = basic_files
    g = Gateway(files, gateway.MOUNT_DIR)
    assert files[HTPASSWD_FILE].splitlines()[0].startswith("ada:{SSHA}")
    c = concrete("/api/v2/tenants/{tenant}/databases/{database}/collections/{collection_id}")
    assert g.decide(Request("POST", "/api/v2/reset", basic("ada", "ada-password-24-chars-xx"))) == CHROMA
    assert g.decide(Request("POST", c + "/query", basic("rita", "rita-password-16+"))) == CHROMA
    assert g.decide(Request("POST", c + "/add", basic("rita", "rita-password-16+"))) == 403
    assert g.decide(Request("POST", c + "/add", basic("wes", "wes-password-16-chars"))) == CHROMA
    for headers in ({}, basic("rita", "wrong-password-16+"), basic("nobody", "rita-password-16+"),
                    basic("RITA", "rita-password-16+"), bearer("rita-password-16+")):
        for path in ("/api/v2/auth/identity", c + "/add"):
            assert g.decide(Request("POST", path, headers)) == 401  # the same 401: no role revealed


def test_costly_users_are_rate_limited_per_address_before_their_hash(basic_files):
    _, files = basic_files
    g = Gateway(files, gateway.MOUNT_DIR)
    conf = files[gateway.CONFIG_FILE]
    assert set(g.maps) == {"$chromactl_cost7", "$chromactl_cost8", "$chromactl_role", "$chromactl_refusal",
                           "$chromactl_backend", "$chromactl_limit_key"} | AUDIT_MAPS
    for cost, user in ((7, "wes"), (8, "ari")):
        who = lambda name: g.variable(f"$chromactl_cost{cost}", Request("GET", "/", basic(name, "x")))  # noqa: E731
        assert who(user) == "192.0.2.7"
        assert who("ada") == who("rita") == who(user + "x") == who(user[:-1]) == who("") == ""
        rate = gateway.costly_rate_per_minute(cost)
        assert f"limit_req_zone $chromactl_cost{cost} zone=chromactl_cost{cost}:1m rate={rate}r/m;" in conf
        assert f"limit_req zone=chromactl_cost{cost} burst={gateway.COSTLY_BURST} nodelay;" in conf
    location = g.server.children("location")[-1]
    names = [d.name for d in location.block]
    assert names == ["limit_conn", "limit_req", "limit_req", "limit_req_status", "auth_basic", "auth_basic_user_file",
                     "proxy_pass"]
    assert location.child("limit_req_status").args == ["429"]


def test_cheap_users_only_no_rate_limit_and_no_rbac_maps():
    creds = new_credentials(BASIC_PLAIN).with_user(User("ada", password_hash=hash_password("ada-password-16-chars", 6)))
    files = gateway.render_gateway(BASIC_PLAIN, creds)
    g = Gateway(files, gateway.MOUNT_DIR)
    assert set(g.maps) == {"$chromactl_limit_key"} | AUDIT_MAPS and "limit_req" not in files[gateway.CONFIG_FILE]
    assert files[HTPASSWD_FILE] == f"ada:{creds.users[0].password_hash}\n"
    assert g.decide(Request("POST", "/api/v2/reset", basic("ada", "ada-password-16-chars"))) == CHROMA
    assert g.decide(Request("POST", "/api/v2/reset", basic("ada", "ada-password-16-charz"))) == 401
    token_files = gateway.render_gateway(TOKEN_RBAC, token_credentials(TOKEN_RBAC))
    assert HTPASSWD_FILE not in token_files and "auth_basic" not in token_files[gateway.CONFIG_FILE]


@pytest.mark.parametrize("cost, expected", [
    (4, 6666), (5, 3333), (6, 1666), (7, 833), (8, 416), (10, 104), (12, 26), (13, 13), (14, 6), (15, 6), (16, 6)])
def test_costly_rate(cost, expected):
    # 60 * COSTLY_CPU_MS_PER_SECOND / (0.9 ms * 2 ** (cost - 4)), at least 6 a minute.
    assert gateway.costly_rate_per_minute(cost) == expected


# --- names that could inject into nginx.conf ---------------------------------------------------


@pytest.mark.parametrize("name", ['a"b', "a;b", "a b", "a\nb", "a{b", "a}b", "a$b", "", "-a", "a:b", "x" * 65])
def test_hostile_names_are_refused_where_they_would_be_written(name):
    token_user = Credentials(roles={"reader": roles.READER}).with_user(User(name, "reader", tokens=("T" * 40,)))
    with pytest.raises(ValueError, match="refusing to write name"):
        gateway.render_gateway(TOKEN_RBAC, token_user)
    with pytest.raises(ValueError, match="refusing to write name"):
        gateway.render_gateway(TOKEN_PLAIN, Credentials().with_user(User(name, tokens=("T" * 40,))))
    # Under basic auth a user name reaches nginx.conf only escaped, in a regex: it matches itself alone.
    basic_user = Credentials(roles={"reader": roles.READER}).with_user(
        User(name, "reader", password_hash=hash_password("p", 4)))
    g = Gateway(gateway.render_gateway(BASIC_RBAC, basic_user), gateway.MOUNT_DIR)
    if name and ":" not in name:
        assert g.variable("$chromactl_role", Request("GET", "/", basic(name, "p"))) == "reader"
    assert g.variable("$chromactl_role", Request("GET", "/", basic(name + "x", "p"))) == ""
    hostile_role = Credentials(roles={name: roles.READER}).with_user(User("alice", name, tokens=("T" * 40,)))
    with pytest.raises(ValueError, match="refusing to write name"):
        gateway.render_gateway(TOKEN_RBAC, hostile_role)
    unused_role = Credentials(roles={"reader": roles.READER, name: ()}).with_user(User("alice", "reader", tokens=("T" * 40,)))
    with pytest.raises(ValueError, match="refusing to write name"):
        gateway.render_gateway(TOKEN_RBAC, unused_role)


def test_names_with_dots_and_at_signs_are_matched_literally():
    creds = (Credentials(roles={"reader": roles.READER, "admin": roles.ADMIN})
             .with_user(User("a.b@c", "admin", password_hash=hash_password("p" * 16, 4)))
             .with_user(User("aXb@c", "reader", password_hash=hash_password("q" * 16, 4))))
    g = Gateway(gateway.render_gateway(BASIC_RBAC, creds), gateway.MOUNT_DIR)
    assert g.variable("$chromactl_role", Request("GET", "/", basic("aXb@c", "x"))) == "reader"
    assert g.variable("$chromactl_role", Request("GET", "/", basic("a.b@c", "x"))) == "admin"
    assert g.variable("$chromactl_role", Request("GET", "/", basic("a.b@cd", "x"))) == ""
    assert g.variable("$chromactl_role", Request("GET", "/", basic("A.B@C", "x"))) == ""


def test_role_rules_are_anchored_to_the_whole_role_name():
    creds = (Credentials(roles={"read": roles.READER, "readerplus": ("system:reset",)})
             .with_user(User("u1", "read", tokens=("R" * 40,))).with_user(User("u2", "readerplus", tokens=("S" * 40,))))
    g = model(TOKEN_RBAC, creds)
    assert g.decide(Request("POST", "/api/v2/reset", bearer("S" * 40))) == CHROMA
    assert g.decide(Request("POST", "/api/v2/reset", bearer("R" * 40))) == 403
    assert g.decide(Request("GET", "/api/v2/tenants/acme", bearer("S" * 40))) == 403


# --- the rest of the file ---------------------------------------------------------------------


def test_listen_tls_summary_and_upstream():
    creds = token_credentials(TOKEN_RBAC)
    plain = gateway.render_gateway(TOKEN_RBAC, creds, upstream="127.0.0.1:9999", listen=18080)
    assert set(plain) == {gateway.CONFIG_FILE}
    g = Gateway(plain, gateway.MOUNT_DIR)
    assert g.server.child("listen").args == ["18080"] and not g.server.children("ssl_certificate")
    assert g.upstreams["chroma"].child("server").args == ["127.0.0.1:9999"]
    assert "# Auth: token in Authorization, RBAC\n" in plain[gateway.CONFIG_FILE]
    files = gateway.render_gateway(TOKEN_RBAC, creds, tls=("CERT", "KEY"))
    assert files[gateway.TLS_CERT_FILE] == "CERT" and files[gateway.TLS_KEY_FILE] == "KEY"
    g = Gateway(files, gateway.MOUNT_DIR)
    assert g.server.child("listen").args == [str(gateway.LISTEN_PORT), "ssl"]
    assert g.server.child("ssl_certificate").args == [f"{gateway.MOUNT_DIR}/server.pem"]
    assert g.server.child("ssl_certificate_key").args == [f"{gateway.MOUNT_DIR}/server.key"]
    assert g.server.child("ssl_protocols").args == ["TLSv1.2", "TLSv1.3"]
    protected = next(d for d in g.server.children("location") if d.args == ["/"])
    assert protected.child("limit_conn").args == ["chromactl_per_client", str(gateway.CONNECTIONS_PER_CLIENT)]
    assert not g.http.children("limit_conn")  # public routes are never limited
    assert g.http.child("limit_conn_zone").args[0] == "$chromactl_limit_key"
    assert "# Auth: basic\n" in gateway.render_gateway(BASIC_PLAIN, Credentials())[gateway.CONFIG_FILE]
    assert "# Auth: token in X-Chroma-Token, RBAC\n" in gateway.render_gateway(
        X_TOKEN_RBAC, token_credentials(X_TOKEN_RBAC))[gateway.CONFIG_FILE]


def test_uncovered_actions_name_what_the_table_misses():
    assert gateway.uncovered_actions(dict(roles.BUILTIN_ROLES)) == []
    assert gateway.uncovered_actions({"a": ("x:b", "system:reset", "x:a"), "b": ("x:b",)}) == ["x:a", "x:b"]


def test_path_pattern():
    assert gateway.path_pattern("/api/v2/tenants/{tenant}/databases") == "/api/v2/tenants/[^/]+/databases"
    assert gateway.path_pattern("/a.b/{x}{y}/c") == r"/a\.b/[^/]+[^/]+/c"


@pytest.mark.parametrize("method, path, verdict", [
    ("GET", "/api/v2/heartbeat", "public"), ("POST", "/api/v2/heartbeat", "unknown"),
    ("GET", "/api/v2/tenants/{tenant_name}", "mapped"), ("PATCH", "/api/v2/tenants/{tenant_name}", "refused"),
    ("POST", "/api/v2/tenants/{t}/databases/{d}/collections/{c}/fork", "refused"),
    ("POST", "/api/v2/tenants/{t}/databases/{d}/collections/{c}/add", "mapped"),
    ("DELETE", "/api/v2/tenants/{t}/databases/{d}/collections/{c}/add", "unknown"),
    ("GET", "/api/v2/tenants/default", "unknown"),  # a literal where the table has a placeholder
    ("GET", "/api/v2/{version}/identity", "unknown"),  # a placeholder where the table has a literal
    ("GET", "/api/v2/tenants/{t}/databases/{d}/collections/{c}/count/x", "unknown"),
    ("GET", "/api/v2/tenants", "unknown"), ("GET", "/api/v2/auth/identity", "mapped"),
])
def test_classify_the_routes_of_an_openapi_document(method, path, verdict):
    assert routes.classify(method, path) == verdict


def test_gateway_container_spec():
    spec = gateway.gateway_spec("/proj", TOKEN_RBAC, "/proj/.chromactl/gateway", "sha256:abc", (1000, 1001),
                                "172.20.0.3")
    assert spec.mounts[0].source == "/proj/.chromactl/gateway" and spec.mounts[0].target == gateway.MOUNT_DIR
    assert spec.command == gateway.COMMAND and spec.container_port == gateway.LISTEN_PORT
    assert spec.user == "1000:1001" and spec.port == TOKEN_RBAC.port and spec.host == TOKEN_RBAC.host
    assert spec.name == "chromactl-p-gateway" and spec.image == TOKEN_RBAC.gateway_image
    assert [(a.network, a.address) for a in spec.networks] == [("chromactl-p", None),
                                                               ("chromactl-p-internal", "172.20.0.3")]
    assert spec.volume is None and spec.environment == {} and spec.tmpfs == ("/tmp",)
    assert {"/proj", "gateway", "p", "token"} <= set(spec.labels.values())
    other_image = gateway.gateway_spec("/proj", TOKEN_RBAC, "/proj/.chromactl/gateway", "sha256:def", (1000, 1001),
                                       "172.20.0.3")
    assert other_image.config_hash != spec.config_hash  # a new image recreates the gateway


# --- a real nginx, where one is installed --------------------------------------------------------


def nginx_binary() -> str:
    found = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.path.exists(p)), None)
    require(found is not None, "no nginx binary (Debian: apt-get install nginx-light)")
    return found


def write_config(files: dict[str, str], folder: Path) -> Path:
    """The gateway's files in `folder`, with nginx.conf's paths moved there: its folder and /tmp."""
    for name, content in files.items():
        text = content.replace(gateway.MOUNT_DIR + "/", f"{folder}/").replace("/tmp/chromactl-", f"{folder}/chromactl-")
        (folder / name).write_text(text)
        (folder / name).chmod(0o600)
    return folder / gateway.CONFIG_FILE


def _global_directives() -> str:
    # As root nginx would run its workers as nobody, who cannot read the 0600 files: keep root.
    return "user root;" if os.geteuid() == 0 else ""


@contextmanager
def running_nginx(binary: str, files: dict[str, str], port: int, folder: Path) -> Iterator[None]:
    """A real nginx serving the gateway's files (written into `folder`, see write_config) on
    127.0.0.1:port; stopped gracefully after, so that its log buffers are written out."""
    conf = write_config(files, folder)
    args = [binary, "-p", str(folder), "-e", "stderr", "-c", str(conf), "-g", "daemon off; " + _global_directives()]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert process.poll() is None, process.stderr.read().decode()
                assert time.monotonic() < deadline, "nginx did not start"
                time.sleep(0.05)
        yield
    finally:
        process.send_signal(signal.SIGQUIT)  # a graceful stop flushes the log's buffer
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def nginx_test(binary: str, conf: Path) -> subprocess.CompletedProcess:
    args = [binary, "-t", "-q", "-p", str(conf.parent), "-e", "stderr", "-c", str(conf)]
    if _global_directives():
        args += ["-g", _global_directives()]
    return subprocess.run(args, capture_output=True, text=True, timeout=60)


def configurations():
    ca = tls.new_ca("p")
    issued = tls.issue_server(ca, ("localhost", "127.0.0.1"))
    hostile = (Credentials(roles=dict(ROLES)).with_user(User("p", "admin", tokens=(PUNCTUATION_TOKEN,)))
               .with_user(User("q", "reader", tokens=('"; } default chroma; map $x $y { #abcdefgh',))))
    basic_creds = (new_credentials(BASIC_RBAC)
                   .with_user(User("ada", "admin", password_hash=hash_generated("ada-password-24-chars-xx", BASIC_RBAC)))
                   .with_user(User("wes", "writer", password_hash=hash_password("wes-password-16-chars", 7))))
    return {
        "token-rbac": (TOKEN_RBAC, token_credentials(TOKEN_RBAC), None),
        "token-plain": (TOKEN_PLAIN, token_credentials(TOKEN_PLAIN), None),
        "x-chroma-token": (X_TOKEN_RBAC, token_credentials(X_TOKEN_RBAC), None),
        "hostile-tokens": (TOKEN_RBAC, hostile, None),
        "basic-rbac-costly": (BASIC_RBAC, basic_creds, None),
        "basic-plain": (BASIC_PLAIN, Credentials().with_user(User("a", password_hash=hash_password("p" * 16, 4))), None),
        "tls": (TOKEN_RBAC, token_credentials(TOKEN_RBAC), (issued.cert + ca.cert, issued.key)),
    }


CONFIGURATIONS = configurations()


@pytest.mark.parametrize("mode", list(CONFIGURATIONS))
def test_nginx_accepts_the_rendered_configuration(mode):
    binary = nginx_binary()
    settings, creds, tls_pair = CONFIGURATIONS[mode]
    with tempfile.TemporaryDirectory(prefix="cg") as folder:
        conf = write_config(gateway.render_gateway(settings, creds, tls=tls_pair), Path(folder))
        result = nginx_test(binary, conf)
        assert result.returncode == 0, result.stderr
        # And nginx -t does fail on a broken one: the check is real.
        conf.write_text(conf.read_text().replace("proxy_pass http://", "proxy_pass htp://"))
        assert nginx_test(binary, conf).returncode != 0


class _Chroma(BaseHTTPRequestHandler):
    def _answer(self):
        body = b'{"upstream":"chroma"}'
        self.send_response(299)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _answer

    def log_message(self, *args):
        pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ask(port: int, request: Request) -> tuple[str | int, dict[str, str]]:
    """The decision, and the refusal's reason header when nginx sent one."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.putrequest(request.method, request.target, skip_accept_encoding=True)
        for name, value in request.headers.items():
            connection.putheader(name, value)
        connection.endheaders()
        response = connection.getresponse()
        response.read()
        reason = response.getheader(gateway.REFUSED_HEADER)
        return (CHROMA if response.status == 299 else response.status,
                {gateway.REFUSED_HEADER: reason} if reason is not None else {})
    finally:
        connection.close()


def test_a_real_nginx_decides_as_the_model_does(tmp_path):
    """The model's fidelity: the same requests, through nginx with the rendered configuration
    and a stand-in for Chroma, get the same decisions."""
    binary = nginx_binary()
    chroma = ThreadingHTTPServer(("127.0.0.1", 0), _Chroma)
    threading.Thread(target=chroma.serve_forever, daemon=True).start()
    basic_creds = (new_credentials(BASIC_RBAC)
                   .with_user(User("ada", "admin", password_hash=hash_generated("ada-password-24-chars-xx", BASIC_RBAC)))
                   .with_user(User("rita", "reader", password_hash=hash_password("rita-password-16+", 4))))
    short, long = "SharedPrefix0123", "SharedPrefix0123AndMore"
    prefix_creds = (Credentials(roles=dict(roles.BUILTIN_ROLES)).with_user(User("rita", "reader", tokens=(short,)))
                    .with_user(User("ada", "admin", tokens=(long, PUNCTUATION_TOKEN))))
    c = concrete("/api/v2/tenants/{tenant}/databases/{database}/collections/{collection_id}")
    cases = {
        "token-rbac": (TOKEN_RBAC, token_credentials(TOKEN_RBAC), [
            Request(method, concrete(template), bearer(TOKENS[role]))
            for role in ROLES for _, template, _ in ROUTES for method in ("GET", "POST", "DELETE")] + [
            Request("GET", "/api/v2/auth/identity", bearer(TOKENS["admin"] + suffix)) for suffix in ("x", "%0A", " ")] + [
            Request("GET", "/api/v2/auth/identity", {"Authorization": h}) for h in
            ("bearer " + TOKENS["admin"], TOKENS["admin"], "Bearer " + TOKENS["admin"].swapcase())] + [
            Request("POST", t, bearer(TOKENS["admin"])) for t in
            ("/api/v2/reset%0A", "/api/v2//reset", "/api/v2/x/%2E%2E/reset", "/api/v2/reset/", "/API/v2/reset")] + [
            Request(m, p) for m, p in PUBLIC_ROUTES] + [Request("POST", p) for _, p in PUBLIC_ROUTES]),
        "prefix-and-punctuation": (TOKEN_RBAC, prefix_creds, [
            Request("POST", "/api/v2/reset", bearer(t)) for t in
            (short, long, PUNCTUATION_TOKEN, short + "A", PUNCTUATION_TOKEN.replace(".", "x"))]),
        "token-plain": (TOKEN_PLAIN, token_credentials(TOKEN_PLAIN), [
            Request("POST", c + "/fork", h) for h in (bearer(TOKENS["reader"]), bearer("nope" * 5), {})]),
        "basic-rbac": (BASIC_RBAC, basic_creds, [
            Request(method, path, headers) for method, path in (("POST", "/api/v2/reset"), ("POST", c + "/query"),
                                                                ("POST", c + "/add"), ("GET", "/api/v2/heartbeat"))
            for headers in (basic("ada", "ada-password-24-chars-xx"), basic("rita", "rita-password-16+"),
                            basic("rita", "rita-password-16-"), basic("bob", "x"), {})]),
    }
    try:
        for name, (settings, creds, requests) in cases.items():
            port = _free_port()
            files = gateway.render_gateway(settings, creds, upstream=f"127.0.0.1:{chroma.server_port}", listen=port)
            expected = Gateway(files, gateway.MOUNT_DIR)
            folder = Path(tempfile.mkdtemp(prefix="cg"))
            try:
                with running_nginx(binary, files, port, folder):
                    mismatches = [(r.method, r.target, r.headers, answer, expected.answer(r))
                                  for r in requests if (answer := _ask(port, r)) != expected.answer(r)]
                    assert not mismatches, (name, mismatches[:5], len(mismatches))
            finally:
                shutil.rmtree(folder, ignore_errors=True)
    finally:
        chroma.shutdown()


# --- the per-address limit: strangers only -----------------------------------------------------


def test_only_strangers_count_against_their_address(token_gateway):
    """The connection limit is keyed per address for callers the gateway does not know, and
    not at all for a known token: a flood of strangers from an address shared with real
    clients (Docker's userland proxy) does not starve them, nor chromactl's own probe."""
    def key(headers):
        return token_gateway.variable("$chromactl_limit_key", Request("POST", "/x", headers, remote_addr="10.9.8.7"))

    assert key({}) == "10.9.8.7" and key(bearer("W" * 40)) == "10.9.8.7"
    assert key(bearer(TOKENS["reader"] + "x")) == "10.9.8.7"  # a prefix match is no match
    assert all(key(bearer(token)) == "" for token in TOKENS.values())


def test_under_basic_auth_only_the_probes_exact_header_is_spared():
    creds = Credentials(roles=None, users=(User("admin", password_hash=hash_generated("admin-password-x" * 2,
                                                                                        BASIC_PLAIN)),))
    probe = basic("chromactl-probe", "P" * 24)["Authorization"]
    g = model(BASIC_PLAIN, creds, probe_header=probe)

    def key(headers):
        return g.variable("$chromactl_limit_key", Request("GET", "/x", headers, remote_addr="10.9.8.7"))

    assert key({"Authorization": probe}) == ""
    # A stranger who sends a known user's name (with any password) is still a stranger: the
    # password is checked only after the limit.
    for headers in ({}, basic("admin", "wrong"), basic("chromactl-probe", "P" * 23), {"Authorization": probe + "x"}):
        assert key(headers) == "10.9.8.7", headers


@pytest.mark.parametrize("path", ["/docs", "/openapi.json", "/redoc", "/docs/oauth2-redirect"])
def test_the_api_description_pages_are_refused_to_everyone(path):
    """Chroma 0.6.3 serves them to anyone natively (README: What it does not do); the gateway
    has no route for them, for strangers and for every role alike."""
    g = model(TOKEN_RBAC, token_credentials(TOKEN_RBAC))
    assert g.decide(Request("GET", path)) in (401, 403)
    for role in ROLES:
        assert g.decide(Request("GET", path, bearer(TOKENS[role]))) == 403, role
