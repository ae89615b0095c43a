"""The audit trail on the real engine: the gateway (Debian's nginx, built locally) in front
of a real Chroma 1.5.9 logs each request; `chromactl audit --json` shows who did what, with
the right user, role, action, status and reason; the lines survive `up` recreating the
gateway and `down` removing it (archived in .chromactl/audit/ first); `status` shows the
last minute's rates; and no secret is in any output or archived file."""

from __future__ import annotations

import json
import secrets
import stat
import time
import urllib.request

import pytest

from conftest import COLLECTIONS, add_user, admin_secret, document, free_port, instances, ok, up
from test_gateway import gateway_project  # noqa: F401  (the fixture)

pytestmark = pytest.mark.docker


def request(url: str, method: str = "GET", token: str | None = None, body: dict | None = None) -> int:
    headers = {"Content-Type": "application/json"} | ({"Authorization": f"Bearer {token}"} if token else {})
    data = json.dumps(body).encode() if body is not None else None
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data, headers=headers, method=method),
                                    timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def audit_entries(project, *args) -> dict:
    return document(ok(project("audit", "--json", *args)), "audit")


def wait_for(project, count: int, *args) -> dict:
    """The audit document once it holds `count` entries (nginx writes its lines within a second)."""
    deadline = time.monotonic() + 15
    while True:
        doc = audit_entries(project, *args)
        if len(doc["entries"]) >= count or time.monotonic() > deadline:
            return doc
        time.sleep(0.3)


def brief(entries: list[dict]) -> list[tuple]:
    return [(e["user"], e["role"], e["action"], e["status"], e["reason"]) for e in entries]


def in_order(expected: list[tuple], seen: list[tuple]) -> bool:
    """Whether `expected` are among `seen`, in that order (chromactl's own probes, by its
    probe user and without credentials, come in between when up or status run)."""
    rest = iter(seen)
    return all(any(item == other for other in rest) for item in expected)


def since(started: float, entries: list[dict]) -> list[tuple]:
    return brief([e for e in entries if e["ts"] >= started and e["user"] != "chromactl-probe"])


def test_the_audit_trail_names_who_did_what_and_survives_recreate_and_down(gateway_project, docker_client):
    p = gateway_project()
    admin = admin_secret(p)
    reader = add_user(p, "rita", "reader")
    wrong = "wrong" + secrets.token_hex(16)
    result, doc = up(p)
    assert result.returncode == 0, result.stderr
    gateway = docker_client.containers.get(f"{p.container}-gateway")
    assert gateway.attrs["HostConfig"]["LogConfig"] == {"Type": "json-file",
                                                        "Config": {"max-size": "10m", "max-file": "5"}}

    started = time.time()
    assert request(p.url + COLLECTIONS, "POST", admin, {"name": "audited"}) == 200
    assert request(p.url + COLLECTIONS, token=wrong) == 403
    assert request(p.url + COLLECTIONS) == 403
    assert request(p.url + COLLECTIONS, token=reader) == 200
    assert request(p.url + COLLECTIONS, "POST", reader, {"name": "denied"}) == 403
    expected = [("admin", "admin", "db:create_collection", 200, ""),
                ("unknown", "", "db:list_collections", 403, "bad_credentials"),
                ("", "", "db:list_collections", 403, "no_credentials"),
                ("rita", "reader", "db:list_collections", 200, ""),
                ("rita", "reader", "db:create_collection", 403, "role")]
    deadline = time.monotonic() + 15  # nginx writes its lines within a second
    while len(since(started, (doc := audit_entries(p, "--since", "10m"))["entries"])) < len(expected) \
            and time.monotonic() < deadline:
        time.sleep(0.3)
    # status: the last minute's rates, from the same lines (at once: the requests must still be
    # in the window on a slow machine; status's own probes are not counted).
    [instance] = instances(ok(p("status", "--json")))
    assert instance["traffic"]["requests_per_minute"] >= 5 and instance["traffic"]["refused_per_minute"] >= 3
    assert since(started, doc["entries"]) == expected, brief(doc["entries"])
    ours = [e for e in doc["entries"] if e["ts"] >= started]
    assert all(e["client"] and e["method"] in ("GET", "POST") and e["path"] == COLLECTIONS for e in ours)
    assert doc["live_gateway"] == f"{p.container}-gateway" and doc["damaged_lines"] == 0
    # The filters, through the CLI.
    assert brief(audit_entries(p, "--user", "rita", "--status", "4xx")["entries"]) == [expected[4]]
    assert brief(audit_entries(p, "--user", "unknown")["entries"]) == [expected[1]]
    table = ok(p("audit", "--since", "10m", "--user", "rita"))
    assert "rita" in table.stdout and "db:create_collection" in table.stdout
    assert max(len(line) for line in table.stdout.splitlines()) <= 100

    # A setting changed: `up` recreates the gateway, and the earlier lines are still shown.
    port = free_port()
    settings = p.folder / "chromactl.yaml"
    settings.write_text(settings.read_text().replace(f"port: {p.port}", f"port: {port}"))
    p.url = f"http://127.0.0.1:{port}"
    result, doc = up(p)
    assert result.returncode == 0, result.stderr
    assert doc["gateway"]["action"] == "recreated"
    assert request(p.url + COLLECTIONS, token=admin) == 200
    after = wait_for(p, 2, "--since", "10m", "--user", "admin")
    assert [e["action"] for e in after["entries"]] == ["db:create_collection", "db:list_collections"]
    whole = audit_entries(p, "--since", "10m")
    assert in_order(expected + [("admin", "admin", "db:list_collections", 200, "")], since(started, whole["entries"]))
    assert whole["archived_files"] == 1

    # down removes the gateway: its lines are archived first, and audit still shows them all.
    ok(p("down"))
    gone = audit_entries(p, "--since", "10m")
    assert gone["live_gateway"] is None and gone["archived_files"] == 2
    assert since(started, gone["entries"]) == since(started, whole["entries"])  # nothing lost, nothing twice
    assert in_order(expected + [("admin", "admin", "db:list_collections", 200, "")], since(started, gone["entries"]))

    folder = p.folder / ".chromactl" / "audit"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    archived = sorted(folder.iterdir())
    assert len(archived) == 2 and all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in archived)
    # No secret anywhere: neither the tokens sent (right or wrong) nor any other.
    said = [f.read_text() for f in archived] + [json.dumps(gone), ok(p("audit")).stdout, ok(p("audit")).stderr]
    for secret in (admin, reader, wrong):
        assert not any(secret in text for text in said), "a secret in the audit trail"
