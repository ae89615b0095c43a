"""Tenants on the real engine: `chromactl tenant add|list` against Chroma 1.5.9 behind the
gateway (over the project's TLS) and natively against 0.6.3, and users scoped to a tenant
attacked by every route: Chroma 1.5.9's real Python client and raw requests (http.client
and a raw TLS socket), each refusal checked against the other tenant's data as the admin
sees it before and after, and the audit line each request leaves in the gateway's log.

One deployment serves the 1.5.9 tests of this file (module fixture); it and everything it
made are removed afterwards, pass or fail."""

from __future__ import annotations

import http.client
import json
import os
import secrets
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from chromactl.certs import TLS_DIR

from conftest import (HELPERS, IMAGE_063, IMAGE_159, ROUNDS, document, free_port, ok, require,
                      run_chromactl)

GATEWAY_IMAGE = "chromactl-test/nginx:bookworm"

pytestmark = pytest.mark.docker

V2 = "/api/v2"


def _cleanup(docker_client, folder: Path, volume: str) -> None:
    label = {"label": f"org.chromactl.project={folder}"}
    for container in docker_client.containers.list(all=True, filters=label):
        container.remove(force=True)
    for network in docker_client.networks.list(filters=label):
        network.remove()
    for v in docker_client.volumes.list(filters={"name": volume}):
        if v.name == volume:
            v.remove(force=True)


class World:
    """The deployment: a project, its users and secrets, and how to reach it."""

    def __init__(self, folder: Path, name: str, port: int):
        self.folder, self.name, self.port = folder, name, port
        self.container = f"chromactl-{name}"
        self.url = f"https://127.0.0.1:{port}"
        self.secrets: dict[str, str] = {}
        self.snippets: dict[str, str] = {}
        self.ids: dict[str, str] = {}

    def run(self, *args, **kwargs):
        kwargs.setdefault("cwd", self.folder)
        kwargs["env"] = {**ROUNDS, **kwargs.get("env", {})}
        return run_chromactl(*args, **kwargs)

    @property
    def ca(self) -> str:
        return str(self.folder / TLS_DIR / "ca.pem")

    def context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.ca)

    def raw(self, user: str | None, method: str, path: str, body=None,
            headers: dict | None = None) -> tuple[int, str | None, bytes]:
        """One request over http.client: (status, X-Chromactl-Refused, body)."""
        connection = http.client.HTTPSConnection("127.0.0.1", self.port, timeout=30, context=self.context())
        sent = {"Content-Type": "application/json", **(headers or {})}
        if user is not None:
            sent["Authorization"] = f"Bearer {self.secrets[user]}"
        data = json.dumps(body).encode() if body is not None else None
        try:
            connection.request(method, path, body=data, headers=sent)
            response = connection.getresponse()
            return response.status, response.getheader("X-Chromactl-Refused"), response.read()
        finally:
            connection.close()

    def socket_request(self, user: str, request_line: str, body: bytes = b"") -> tuple[int, bytes]:
        """A request written byte for byte on a TLS socket (absolute-form targets, odd spacing)."""
        head = (f"{request_line}\r\nHost: 127.0.0.1:{self.port}\r\nAuthorization: Bearer {self.secrets[user]}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n")
        with socket.create_connection(("127.0.0.1", self.port), timeout=30) as raw:
            with self.context().wrap_socket(raw, server_hostname="localhost") as tls:
                tls.sendall(head.encode() + body)
                answer = b""
                while chunk := tls.recv(65536):
                    answer += chunk
        status = int(answer.split(b" ", 2)[1])
        return status, answer

    def client(self, request: dict) -> list:
        python = os.environ.get("CHROMACTL_TEST_CHROMA_1X_PYTHON", "")
        require(bool(python) and Path(python).exists(),
                "CHROMACTL_TEST_CHROMA_1X_PYTHON must name a python with chromadb==1.5.9")
        result = subprocess.run([python, str(HELPERS / "tenant_client.py")], input=json.dumps(request),
                                capture_output=True, text=True, timeout=300,
                                env={"PATH": os.environ["PATH"], "ANONYMIZED_TELEMETRY": "False"})
        assert result.returncode == 0, result.stderr[-3000:]
        return json.loads(result.stdout)["results"]

    def as_user(self, user: str, ops: list, **named) -> dict:
        """Ops through the real client as `user`, naming the tenant and database given (or none)."""
        results = self.client({"url": self.url, "ca": self.ca, "credentials": self.secrets[user], **named,
                               "ops": ops})
        return results

    def by_snippet(self, user: str, ops: list) -> list:
        """Ops through the real client built by the snippet `creds add --json` printed for `user`."""
        return self.client({"snippet": self.snippets[user], "credentials": self.secrets[user], "ops": ops})

    def admin_view(self) -> dict:
        """What globex holds, as the admin sees it: its collections, and each one's count and records."""
        ops = [["list"]] + [[op, "secret_docs"] for op in ("count", "get")]
        results = self.as_user("admin", ops, tenant="globex", database="prod")
        assert all(r[1] == "ok" for r in results), results
        status, _, body = self.raw("admin", "GET", f"{V2}/tenants/globex/databases")
        assert status == 200
        databases = sorted(d["name"] for d in json.loads(body))
        return {"results": results, "databases": databases}

    def audit(self, docker_client) -> list[dict]:
        logs = docker_client.containers.get(self.container + "-gateway").logs(stdout=True, stderr=False).decode()
        return [json.loads(line) for line in logs.splitlines() if line.startswith('{"audit":1')]


def _values(results: list) -> dict:
    return {op: (outcome, value) for op, outcome, value in results}


@pytest.fixture(scope="module")
def world(tmp_path_factory, docker_client):
    try:
        docker_client.images.get(GATEWAY_IMAGE)
    except Exception:
        pytest.fail(f"the locally built image {GATEWAY_IMAGE} is missing (ci/chroma-images.sh builds it)")
    name = "t" + secrets.token_hex(4)
    folder = tmp_path_factory.mktemp("tenants") / name
    folder.mkdir()
    w = World(folder, name, free_port())
    try:
        ok(w.run("init", "--name", name, "--image", IMAGE_159, "--gateway-image", GATEWAY_IMAGE, "--host",
                 "127.0.0.1", "--port", str(w.port), "--tls", "auto", "--json"))
        users = yaml.safe_load((folder / "authz.yaml").read_text())["users"]
        w.secrets["admin"] = next(u for u in users if u["id"] == "admin")["tokens"][0]
        for user, role, scope in (("acme-writer", "writer", ["--tenant", "acme", "--database", "prod"]),
                                  ("acme-reader", "reader", ["--tenant", "acme", "--database", "prod"]),
                                  ("writer", "writer", []), ("reader", "reader", [])):
            doc = document(ok(w.run("creds", "add", user, "--role", role, *scope, "--no-apply", "--json")),
                           "creds add")
            w.secrets[user] = doc["secret"]
            if scope:
                assert doc["scope"] == {"tenant": "acme", "databases": ["prod"]}
                w.snippets[user] = doc["snippets"]["python"]
            else:
                assert doc["snippets"] is None
        ok(w.run("up", "--json"))
        yield w
    finally:
        _cleanup(docker_client, folder, f"chromactl-{name}-data")


@pytest.fixture(scope="module")
def tenants(world):
    """acme and globex, each with database prod and a collection holding records: made by
    `chromactl tenant add` and the admin's client."""
    for tenant in ("acme", "globex"):
        doc = document(ok(world.run("tenant", "add", tenant, "--database", "prod", "--json")), "tenant add")
        assert doc["outcome"] == "created" and doc["databases"] == [{"database": "prod", "outcome": "created"}]
        assert doc["user"] == "admin" and doc["url"] == world.url
    for tenant, collection in (("acme", "acme_docs"), ("globex", "secret_docs")):
        made = world.as_user("admin", [["create", collection], ["add", collection], ["count", collection]],
                             tenant=tenant, database="prod")
        results = _values(made)
        assert results.get("count") == ("ok", 3), made
        world.ids[tenant] = results["create"][1]
    return world


# --- tenant add / list ------------------------------------------------------------------------


def test_tenant_add_is_idempotent_and_list_shows_what_the_server_holds(tenants):
    w = tenants
    again = document(ok(w.run("tenant", "add", "acme", "--database", "prod", "--database", "staging", "--json")))
    assert again["outcome"] == "existed"
    assert again["databases"] == [{"database": "prod", "outcome": "existed"},
                                  {"database": "staging", "outcome": "created"}]
    text = ok(w.run("tenant", "add", "acme", "--database", "staging")).stdout
    assert "Tenant 'acme': already there" in text and "database 'staging': already there" in text
    listed = document(ok(w.run("tenant", "list", "--json")), "tenant list")
    by_name = {t["tenant"]: t for t in listed["tenants"]}
    assert by_name["acme"] == {"tenant": "acme", "exists": True, "databases": ["prod", "staging"],
                               "users": ["acme-writer", "acme-reader"]}
    assert by_name["globex"] == {"tenant": "globex", "exists": True, "databases": ["prod"], "users": []}
    assert by_name["default_tenant"]["databases"] == ["default_database"]
    assert w.secrets["admin"] not in ok(w.run("tenant", "list")).stdout


# --- a scoped user of acme attacks globex ------------------------------------------------------


def _attacks(w: World) -> list[tuple[str, str, dict | None]]:
    """(method, path, body) of every route a scoped user of acme must not use on globex's
    collection, by name and by id, under acme's path and under globex's."""
    g = w.ids["globex"]
    record = {"ids": ["evil"], "embeddings": [[0.1, 0.2, 0.3]], "documents": ["evil"]}
    by_id = [("GET", "count", None), ("POST", "get", {}), ("POST", "get", {"ids": ["a"]}),
             ("POST", "get", {"limit": 10}),  # peek
             ("POST", "query", {"query_embeddings": [[1.0, 0.0, 0.0]], "n_results": 3}),
             ("POST", "search", {"searches": [{}]}),
             ("POST", "add", record), ("POST", "upsert", record), ("POST", "update", {"ids": ["a"], "documents": ["x"]}),
             ("POST", "delete", {"ids": ["a"]}), ("POST", "delete", {"where": {"x": {"$ne": 1}}}),
             ("POST", "fork", {"new_name": "stolen"}), ("GET", "fork_count", None), ("GET", "indexing_status", None),
             ("POST", "functions/attach", {}), ("GET", "functions/f", None)]
    attacks = []
    for base in (f"{V2}/tenants/acme/databases/prod", f"{V2}/tenants/globex/databases/prod",
                 f"{V2}/tenants/default_tenant/databases/default_database"):
        for method, action, body in by_id:
            attacks.append((method, f"{base}/collections/{g}/{action}", body))
        attacks += [("PUT", f"{base}/collections/{g}", {"new_name": "pwned", "new_metadata": {"pwned": True}}),
                    ("DELETE", f"{base}/collections/{g}", None),
                    ("GET", f"{base}/collections/{g}", None),
                    ("GET", f"{base}/collections/by-id/{g}", None)]
    globex = f"{V2}/tenants/globex/databases/prod"
    attacks += [("GET", f"{globex}/collections", None), ("GET", f"{globex}/collections_count", None),
                ("GET", f"{globex}/collections/secret_docs", None), ("DELETE", f"{globex}/collections/secret_docs", None),
                ("POST", f"{globex}/collections", {"name": "planted"}),
                ("POST", f"{globex}/collections", {"name": "secret_docs", "get_or_create": True}),
                ("GET", f"{V2}/collections/globex:prod:secret_docs", None),
                ("GET", globex, None), ("DELETE", globex, None),
                ("GET", f"{V2}/tenants/globex", None), ("PATCH", f"{V2}/tenants/globex", {"resource_name": "x"}),
                ("GET", f"{V2}/tenants/globex/databases", None),
                ("POST", f"{V2}/tenants/globex/databases", {"name": "planted"}),
                ("POST", f"{V2}/tenants", {"name": "evilcorp"}),
                ("POST", f"{V2}/reset", None),
                # acme itself, beyond database prod: the user is scoped to prod alone
                ("GET", f"{V2}/tenants/acme/databases/staging/collections", None),
                ("POST", f"{V2}/tenants/acme/databases/staging/collections", {"name": "planted"}),
                ("GET", f"{V2}/tenants/acme/databases/staging", None),
                ("GET", f"{V2}/tenants/acme/databases", None),
                ("POST", f"{V2}/tenants/acme/databases", {"name": "planted"}),
                ("DELETE", f"{V2}/tenants/acme/databases/prod", None),
                # the id in forms that only resemble the path's: case, encoding, a trailing slash, a query
                ("POST", f"{V2}/tenants/acme/databases/prod/collections/{g.upper()}/get", {}),
                ("POST", f"{V2}/tenants/acme/databases/prod/collections/{g.replace('-', '%2D')}/get", {}),
                ("POST", f"{V2}/tenants/acme/databases/prod/collections/{g}/get/", {}),
                ("POST", f"{V2}/tenants/acme/databases/prod/collections/{g}/get?tenant=globex", {}),
                ("POST", f"{V2}/tenants/%61cme/databases/prod/collections/{g}/get", {}),
                ("POST", f"{V2}/tenants/acme/databases/prod/collections/{g}%3F/get", {})]
    return attacks


@pytest.mark.parametrize("attacker", ["acme-reader", "acme-writer"])
def test_a_scoped_user_reaches_nothing_of_another_tenant_by_raw_request(tenants, attacker):
    w = tenants
    before = w.admin_view()
    let_in = []
    own = f"{V2}/tenants/acme/databases/prod/collections/"
    for method, path, body in _attacks(w):
        status, reason, answer = w.raw(attacker, method, path, body)
        # Looking up a collection by name, or by id with the by-id route, in its own database is
        # the user's right; Chroma looks there alone (measured) and finds nothing of globex.
        if status == 404 and method == "GET" and path.startswith(own) and b"does not exist" in answer:
            continue
        if status not in (400, 403):
            let_in.append((method, path, status, answer[:200]))
        elif status == 403:
            assert reason in ("scope", "role"), (method, path, reason)
    assert let_in == [], let_in
    # Written on a socket as it goes: an absolute-form target naming acme around globex's id.
    g = w.ids["globex"]
    for line in (f"POST https://127.0.0.1:{w.port}{V2}/tenants/acme/databases/prod/collections/{g}/get HTTP/1.1",
                 f"POST {V2}/tenants/acme/databases/prod/collections/{g}/get HTTP/1.1",
                 f"GET {V2}/tenants/globex/databases/prod/collections/{g}/count HTTP/1.1"):
        status, answer = w.socket_request(attacker, line, b"{}")
        assert status == 403, (line, answer[:300])
    after = w.admin_view()
    assert after == before
    assert w.raw("admin", "GET", f"{V2}/tenants/evilcorp")[0] == 404  # no tenant was created


@pytest.mark.parametrize("attacker", ["acme-reader", "acme-writer"])
def test_a_scoped_user_reaches_nothing_of_another_tenant_with_chromas_client(tenants, attacker):
    w = tenants
    before = w.admin_view()
    ops = [["list"], ["count", "secret_docs"], ["get", "secret_docs"], ["peek", "secret_docs"],
           ["query", "secret_docs"], ["add", "secret_docs"], ["update", "secret_docs"], ["upsert", "secret_docs"],
           ["delete", "secret_docs"], ["modify", "secret_docs"], ["fork", "secret_docs", "stolen"],
           ["delete_collection", "secret_docs"]]
    # Naming globex: refused when it connects (Chroma's client checks the tenant and database first).
    named = w.as_user(attacker, ops, tenant="globex", database="prod")
    assert named[0][:2] == ["connect", "denied"], named
    assert "403" in named[0][2] or "Forbidden" in named[0][2], named
    # Connected to its own tenant, it asks for globex's collection by name: not there for it.
    own = _values(w.by_snippet(attacker, ops))
    assert own["connect"][0] == "ok" and own["list"] == ("ok", ["acme_docs"]), own
    assert all(outcome != "ok" for op, (outcome, _) in own.items() if op not in ("connect", "list")), own
    assert w.admin_view() == before


# --- inside its own tenant ---------------------------------------------------------------------


def test_a_scoped_writer_works_in_its_tenant_with_the_printed_settings(tenants):
    w = tenants
    ops = [["identity"], ["where"], ["list"], ["create", "w_docs"], ["add", "w_docs"], ["count", "w_docs"],
           ["get", "w_docs"], ["peek", "w_docs"], ["query", "w_docs"], ["update", "w_docs"], ["upsert", "w_docs"],
           ["delete", "w_docs"], ["count", "w_docs"], ["count", "acme_docs"], ["query", "acme_docs"],
           ["delete_collection", "w_docs"]]
    results = w.by_snippet("acme-writer", ops)
    assert results[0] == ["connect", "ok", None], results
    by_op = {}
    for op, outcome, value in results[1:]:
        by_op.setdefault(op, []).append((outcome, value))
    assert by_op["identity"] == [("ok", {"user_id": "acme-writer", "tenant": "acme", "databases": ["prod"]})]
    assert by_op["where"] == [("ok", ["acme", "prod"])]  # no tenant typed: taken from the identity
    assert by_op["list"] == [("ok", ["acme_docs"])]
    assert by_op["count"] == [("ok", 3), ("ok", 3), ("ok", 3)]  # 3 added; upsert one, delete one
    assert by_op["query"] == [("ok", ["a"]), ("ok", ["a"])]
    failed = [(op, answer) for op in ("create", "add", "get", "peek", "update", "upsert", "delete")
              for answer in by_op[op] if answer[0] != "ok"]
    assert failed == []
    assert by_op["delete_collection"][0][0] == "denied"  # the role still decides inside the scope
    reader = _values(w.by_snippet("acme-reader", [["count", "acme_docs"], ["get", "acme_docs"],
                                                  ["query", "acme_docs"], ["add", "acme_docs"]]))
    assert [reader[op][0] for op in ("connect", "count", "get", "query", "add")] == ["ok"] * 4 + ["denied"], reader
    status, _, body = w.raw("acme-writer", "GET", f"{V2}/auth/identity")
    assert status == 200 and json.loads(body) == {"user_id": "acme-writer", "tenant": "acme", "databases": ["prod"]}
    # Its own collection by id, under its own path: the id check lets it through.
    a = w.ids["acme"]
    assert w.raw("acme-reader", "GET", f"{V2}/tenants/acme/databases/prod/collections/{a}/count")[0] == 200


def test_unscoped_roles_behave_as_before(tenants):
    w = tenants
    g = w.ids["globex"]
    globex = {"tenant": "globex", "database": "prod"}
    reader = _values(w.as_user("reader", [["list"], ["count", "secret_docs"], ["add", "secret_docs"]], **globex))
    assert reader["list"] == ("ok", ["secret_docs"]) and reader["count"] == ("ok", 3), reader
    assert reader["add"][0] == "denied"
    writer = _values(w.as_user("writer", [["create", "wdocs"], ["add", "wdocs"], ["count", "wdocs"],
                                          ["delete_collection", "wdocs"]]))
    assert writer["count"] == ("ok", 3) and writer["delete_collection"][0] == "denied", writer
    admin = _values(w.as_user("admin", [["delete_collection", "wdocs"]]))
    assert admin["delete_collection"][0] == "ok", admin
    # Server-wide users are not scoped: the id answers under any path, as Chroma has it.
    assert w.raw("reader", "GET", f"{V2}/tenants/acme/databases/prod/collections/{g}/count")[0] == 200
    assert w.raw("reader", "GET", f"{V2}/auth/identity")[0] == 200
    assert w.raw(None, "GET", f"{V2}/tenants/globex")[0] == 403


# --- the audit trail ---------------------------------------------------------------------------


def test_each_request_leaves_its_audit_line(tenants, docker_client):
    w = tenants
    g, a = w.ids["globex"], w.ids["acme"]
    acme = f"{V2}/tenants/acme/databases/prod"
    marker = "audit" + secrets.token_hex(3)
    requests = [
        ("acme-writer", "GET", f"{acme}/collections/{g}/count", None,
         {"user": "acme-writer", "role": "writer", "action": "collection:count", "tenant": "acme",
          "database": "prod", "collection": g, "status": 403, "reason": "scope"}),
        ("acme-writer", "POST", f"{acme}/collections/{a}/upsert",
         {"ids": [marker], "embeddings": [[0.3, 0.3, 0.3]]},
         {"user": "acme-writer", "role": "writer", "action": "collection:upsert", "tenant": "acme",
          "database": "prod", "collection": a, "status": 200, "reason": ""}),
        ("acme-reader", "POST", f"{V2}/tenants", {"name": marker},
         {"user": "acme-reader", "role": "reader", "action": "tenant:create_tenant", "tenant": "",
          "status": 403, "reason": "scope"}),
        ("acme-reader", "DELETE", f"{V2}/tenants/globex/databases/prod/collections/secret_docs", None,
         {"user": "acme-reader", "role": "reader", "action": "collection:delete_collection", "tenant": "globex",
          "database": "prod", "collection": "secret_docs", "status": 403, "reason": "scope"}),
        ("acme-reader", "POST", f"{acme}/collections/{a}/add", {"ids": [marker], "embeddings": [[0.1, 0.1, 0.1]]},
         {"user": "acme-reader", "role": "reader", "action": "collection:add", "tenant": "acme",
          "collection": a, "status": 403, "reason": "role"}),
        ("admin", "GET", f"{V2}/tenants/globex/databases", None,
         {"user": "admin", "role": "admin", "action": "db:list_databases", "tenant": "globex", "status": 200,
          "reason": ""}),
        (None, "GET", f"{V2}/tenants/globex", None,
         {"user": "", "role": "", "action": "tenant:get_tenant", "tenant": "globex", "status": 403,
          "reason": "no_credentials"}),
    ]
    started = time.time()
    for user, method, path, body, _ in requests:
        w.raw(user, method, path, body)
    deadline = time.monotonic() + 10
    missing = [r for r in requests]
    while missing and time.monotonic() < deadline:
        time.sleep(0.5)  # the gateway flushes its buffered log within a second
        lines = [line for line in w.audit(docker_client) if line["ts"] >= started - 1]
        missing = [r for r in requests
                   if not any(line["method"] == r[1] and line["path"] == r[2].split("?")[0]
                              and all(line[k] == v for k, v in r[4].items()) for line in lines)]
    assert missing == [], (missing, lines[-20:])
    assert all(w.secrets[u] not in json.dumps(lines) for u in w.secrets)  # no secret in the trail


# --- natively, on Chroma 0.6.3 -----------------------------------------------------------------


def test_tenant_add_and_list_natively_on_063(projects):
    p = projects(image=IMAGE_063)
    ok(p("up", "--json"))
    doc = document(ok(p("tenant", "add", "acme", "--database", "prod", "--json")), "tenant add")
    assert doc["outcome"] == "created" and doc["databases"] == [{"database": "prod", "outcome": "created"}]
    again = document(ok(p("tenant", "add", "acme", "--database", "prod", "--database", "staging", "--json")))
    assert again["outcome"] == "existed"
    assert [d["outcome"] for d in again["databases"]] == ["existed", "created"]
    listed = {t["tenant"]: t for t in document(ok(p("tenant", "list", "--json")), "tenant list")["tenants"]}
    assert listed["acme"]["databases"] == ["prod", "staging"] and listed["acme"]["exists"] is True
    # Tenants exist natively; scoping is the gateway's alone.
    scoped = p("creds", "add", "sam", "--tenant", "acme", "--json")
    assert scoped.returncode == 1 and "does not enforce" in document(scoped)["error"]["message"]
