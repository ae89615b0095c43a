"""`chromactl tenant add|list` without an engine: whose credential it acts with, the exact
requests it sends (to a stand-in on loopback that answers as Chroma 1.5.9 and 0.6.3 were
measured to: 200 created, 409 already there, 404 no such tenant, no route listing tenants),
and what each answer becomes. tests/test_tenants.py runs it against the real server."""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml

from conftest import ROUNDS, document, free_port, ok


class StandIn(BaseHTTPRequestHandler):
    """Chroma's tenant routes, in memory; `refuse` answers every request with that status."""

    tenants: dict[str, set[str]] = {}
    seen: list[tuple[str, str, dict, bytes]] = []
    refuse: int | None = None

    def log_message(self, *args):
        pass

    def _answer(self, status: int, body) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _handle(self, method: str) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.seen.append((method, self.path, dict(self.headers), body))
        if self.refuse:
            return self._answer(self.refuse, {"error": "AuthError", "message": "Forbidden"})
        parts = self.path.split("/")[3:]  # after /api/v2
        if method == "POST" and parts == ["tenants"]:
            name = json.loads(body)["name"]
            if name in self.tenants:
                return self._answer(409, {"error": "ChromaError", "message": f"Tenant [{name}] already exists"})
            self.tenants[name] = set()
            return self._answer(200, {})
        if len(parts) == 2 and method == "GET":
            return self._answer(200, {"name": parts[1]}) if parts[1] in self.tenants else \
                self._answer(404, {"error": "NotFoundError", "message": "not found"})
        if len(parts) == 3 and parts[2] == "databases":
            databases = self.tenants.setdefault(parts[1], set())
            if method == "GET":
                return self._answer(200, [{"id": "x", "name": d, "tenant": parts[1]} for d in sorted(databases)])
            name = json.loads(body)["name"]
            if name in databases:
                return self._answer(409, {"error": "ChromaError", "message": "already exists"})
            databases.add(name)
            return self._answer(200, {})
        self._answer(405, {"detail": "Method Not Allowed"})

    def do_GET(self):
        self._handle("GET")

    def do_POST(self):
        self._handle("POST")


@pytest.fixture
def server():
    StandIn.tenants = {"default_tenant": {"default_database"}}
    StandIn.seen = []
    StandIn.refuse = None
    port = free_port()
    httpd = ThreadingHTTPServer(("127.0.0.1", port), StandIn)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield port
    httpd.shutdown()
    httpd.server_close()


def _project(chromactl, port, *args):
    ok(chromactl("init", "--host", "127.0.0.1", "--port", str(port), "--tls", "off", "--json", *args, env=ROUNDS))
    return chromactl


def _admin_token(project) -> str:
    users = yaml.safe_load((project.project / "authz.yaml").read_text())["users"]
    return next(u for u in users if u["id"] == "admin")["tokens"][0]


def test_add_creates_the_tenant_then_its_databases_as_the_admin_and_reports_what_existed(chromactl, server):
    project = _project(chromactl, server)
    doc = document(ok(project("tenant", "add", "acme", "--database", "prod", "--database", "staging", "--json")),
                   "tenant add")
    assert doc["outcome"] == "created" and doc["user"] == "admin" and doc["url"] == f"http://127.0.0.1:{server}"
    assert doc["databases"] == [{"database": "prod", "outcome": "created"},
                                {"database": "staging", "outcome": "created"}]
    token = _admin_token(project)
    assert [(m, p, json.loads(b)) for m, p, _, b in StandIn.seen] == [
        ("POST", "/api/v2/tenants", {"name": "acme"}),
        ("POST", "/api/v2/tenants/acme/databases", {"name": "prod"}),
        ("POST", "/api/v2/tenants/acme/databases", {"name": "staging"})]
    assert all(h["Authorization"] == f"Bearer {token}" for _, _, h, _ in StandIn.seen)
    assert token not in doc.__repr__()
    again = ok(project("tenant", "add", "acme", "--database", "prod"))
    assert again.stdout.splitlines()[0].startswith("Tenant 'acme': already there")
    assert "database 'prod': already there" in again.stdout and token not in again.stdout + again.stderr
    # Without --database: the database Chroma's clients start in.
    doc = document(ok(project("tenant", "add", "globex", "--json")))
    assert doc["databases"] == [{"database": "default_database", "outcome": "created"}]


def test_list_asks_about_the_tenants_the_project_knows(chromactl, server):
    project = _project(chromactl, server)
    ok(project("tenant", "add", "acme", "--database", "prod"))
    ok(project("creds", "add", "alice", "--role", "writer", "--tenant", "acme", "--database", "prod", "--no-apply"))
    ok(project("creds", "add", "bob", "--role", "reader", "--tenant", "initech", "--no-apply"))
    doc = document(ok(project("tenant", "list", "--json")), "tenant list")
    assert doc["tenants"] == [
        {"tenant": "default_tenant", "exists": True, "databases": ["default_database"], "users": []},
        {"tenant": "acme", "exists": True, "databases": ["prod"], "users": ["alice"]},
        {"tenant": "initech", "exists": False, "databases": [], "users": ["bob"]}]
    text = ok(project("tenant", "list")).stdout
    assert "initech" in text and "not on the server: chromactl tenant add initech" in text


@pytest.mark.parametrize("status, code, words", [
    (401, 1, "did not accept the credential of 'admin' (HTTP 401)"),
    (403, 1, "refused POST /api/v2/tenants to 'admin' (HTTP 403)"),
    (500, 1, "Chroma answered HTTP 500 to POST /api/v2/tenants: Forbidden"),
])
def test_a_refusal_is_one_line_with_its_exit_code(chromactl, server, status, code, words):
    project = _project(chromactl, server)
    StandIn.refuse = status
    result = project("tenant", "add", "acme")
    assert result.returncode == code and result.stdout == "", result.stderr
    [line] = result.stderr.strip().splitlines()
    assert words in line and "Traceback" not in line


def test_basic_auth_acts_with_the_password_the_operator_gives(chromactl, server):
    project = _project(chromactl, server, "--auth", "basic")
    missing = project("tenant", "add", "acme", "--json")
    assert missing.returncode == 2 and "--password-stdin" in document(missing)["error"]["message"]
    assert StandIn.seen == []
    ok(project("tenant", "add", "acme", "--password-stdin", "--user", "root-admin", input="s3cret-pass\n"))
    assert StandIn.seen[0][2]["Authorization"] == "Basic " + base64.b64encode(b"root-admin:s3cret-pass").decode()
    ok(project("tenant", "list", env={"CHROMA_CLIENT_AUTH_CREDENTIALS": "admin:env-pass"}))
    assert StandIn.seen[-1][2]["Authorization"] == "Basic " + base64.b64encode(b"admin:env-pass").decode()
    assert project("tenant", "list", "--user", "x").returncode == 2  # --user goes with --password-stdin


def test_token_auth_needs_a_server_wide_admin_with_a_token(chromactl, server):
    project = _project(chromactl, server)
    ok(project("creds", "add", "boss", "--role", "admin", "--no-apply"))
    ok(project("creds", "rm", "admin", "--no-apply"))
    ok(project("tenant", "add", "acme"))
    boss = next(u for u in yaml.safe_load((project.project / "authz.yaml").read_text())["users"] if u["id"] == "boss")
    assert StandIn.seen[0][2]["Authorization"] == "Bearer " + boss["tokens"][0]
    ok(project("creds", "add", "ops", "--role", "admin", "--tenant", "acme", "--no-apply"))
    ok(project("creds", "rm", "boss", "--force", "--no-apply"))
    result = project("tenant", "add", "acme")  # a scoped admin administers its tenant only
    assert result.returncode == 1 and "no server-wide admin" in result.stderr and "--role admin" in result.stderr


def test_auth_none_asks_without_credentials(chromactl, server):
    project = _project(chromactl, server, "--auth", "none")
    doc = document(ok(project("tenant", "add", "acme", "--json")))
    assert doc["user"] is None and "Authorization" not in StandIn.seen[0][2]
