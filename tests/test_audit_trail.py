"""The audit trail without Docker: the gateway's lines parsed (others skipped, damaged ones
counted), filtered, turned into rates; the archive that `up` and `down` write before they
remove a gateway (0700/0600, bounded, written before the removal), checked with the fake
engine; and what `audit` prints. The Docker suite (tests/test_audit.py) runs the same on a
real gateway in front of a real Chroma."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from chromactl import audit as trail
from chromactl import deploy as deploy_module
from chromactl import output
from chromactl.audit import AuditFilter, parse_lines, parse_since, split_lines, to_prune, traffic
from chromactl.audit_archive import AUDIT_DIR, archive_files, archive_name
from chromactl.commands.audit import AuditResult, audit
from chromactl.commands.down import down
from chromactl.deploy import Action, deploy
from chromactl.errors import ChromactlError, UsageError
from chromactl.gateway import LOG_ROTATION
from chromactl.project import load_project
from chromactl.scaffold import init_project
from conftest import document
from fake_engine import FakeEngine, FakeProber

NOW = 1_796_186_204.0  # 2026-12-02T04:36:44Z
GATEWAY = "chromactl-proj-gateway"


def line(ts: float = NOW, **fields) -> str:
    record = {"audit": 1, "time": "2026-12-02T04:36:44+00:00", "ts": ts, "client": "172.18.0.1", "user": "admin",
              "role": "admin", "action": "collection:add", "tenant": "default_tenant", "database": "default_database",
              "collection": "4b1c7f3e-9a51-4c36-b7c5-0f2d52b1a7e9", "method": "POST",
              "path": "/api/v2/tenants/default_tenant/databases/default_database/collections/x/add", "status": 201,
              "reason": "", "seconds": 0.004, "bytes_in": 812, "bytes_out": 233}
    record.update(fields)
    return json.dumps(record, separators=(",", ":"))


NGINX_MESSAGE = "2026/12/02 04:36:44 [warn] 1#1: the \"user\" directive makes sense only if the master runs as root"


# --- reading lines --------------------------------------------------------------------------


def test_audit_lines_are_read_others_skipped_and_damaged_ones_counted():
    lines = [line(), NGINX_MESSAGE, "", line(user="rita", status=403, reason="role")[:60],  # cut mid-way
             line(status="403"),  # a field of the wrong type
             '{"audit":2,"ts":1}', '{"other":1}', line(user="unknown", status=401, reason="bad_credentials")]
    parsed = parse_lines(lines)
    assert [(e.user, e.status, e.reason) for e in parsed.entries] == [("admin", 201, ""),
                                                                        ("unknown", 401, "bad_credentials")]
    assert (parsed.damaged, parsed.skipped) == (3, 2)
    assert parsed.entries[0].collection == "4b1c7f3e-9a51-4c36-b7c5-0f2d52b1a7e9" and parsed.entries[0].seconds == 0.004


def test_lines_are_whole_however_the_chunks_cut_them():
    text = (line(user="zoë") + "\n" + NGINX_MESSAGE + "\n" + line(ts=NOW + 1)).encode()
    for size in (1, 2, 7, len(text)):
        chunks = [text[i:i + size] for i in range(0, len(text), size)]
        assert list(split_lines(chunks)) == text.decode().split("\n")
    assert parse_lines(split_lines([text])).entries[0].user == "zoë"


@pytest.mark.parametrize("given, expected", [
    ("30s", NOW - 30), ("15m", NOW - 900), ("2h", NOW - 7200), ("1h30m", NOW - 5400), ("7d", NOW - 604800),
    ("1w", NOW - 604800), ("1.5h", NOW - 5400),
    ("2026-12-02T04:36:44Z", NOW), ("2026-12-02T04:36:44+00:00", NOW), ("2026-12-02T05:36:44+01:00", NOW),
    ("2026-12-02 04:36:44", NOW), ("2026-12-02", NOW - (4 * 3600 + 36 * 60 + 44)),
])
def test_since_takes_a_duration_back_from_now_or_a_timestamp_utc_without_a_zone(given, expected):
    assert parse_since(given, NOW) == expected


@pytest.mark.parametrize("given", ["", "yesterday", "5", "h", "-5m", "5m ago", "2026-13-01", "10x"])
def test_since_refuses_anything_else_as_a_usage_error(given):
    with pytest.raises(UsageError, match="--since"):
        parse_since(given, NOW)


@pytest.mark.parametrize("given", ["40", "4x", "4XXX", "600", "6xx", "abc", "", "0xx"])
def test_status_is_a_code_or_a_class(given):
    with pytest.raises(UsageError, match="--status"):
        trail.check_status(given)


def test_filters_keep_what_they_name_and_the_result_is_oldest_first():
    entries = parse_lines([
        line(ts=NOW - 10, user="rita", role="reader", action="collection:get", status=200),
        line(ts=NOW - 3600, user="admin", action="collection:add", status=201),
        line(ts=NOW - 5, user="rita", role="reader", action="collection:add", status=403, reason="role"),
        line(ts=NOW - 1, user="unknown", role="", action="collection:add", status=401, reason="bad_credentials"),
    ]).entries

    def kept(**wanted):
        return [(e.user, e.status) for e in trail.select(entries, AuditFilter(**wanted))]

    assert kept() == [("admin", 201), ("rita", 200), ("rita", 403), ("unknown", 401)]
    assert kept(since=NOW - 60) == [("rita", 200), ("rita", 403), ("unknown", 401)]
    assert kept(user="rita") == [("rita", 200), ("rita", 403)]
    assert kept(action="collection:add", status="4xx") == [("rita", 403), ("unknown", 401)]
    assert kept(status="403") == [("rita", 403)]
    assert kept(status="2xx", user="admin") == [("admin", 201)]
    assert kept(user="nobody") == []


def test_the_rates_count_the_last_minute_and_refusals_are_401_403_429():
    entries = parse_lines([line(ts=NOW - 61), line(ts=NOW - 59), line(ts=NOW - 30, status=403),
                           line(ts=NOW - 20, status=429), line(ts=NOW - 10, status=401),
                           line(ts=NOW - 5, status=404), line(ts=NOW + 0.5)]).entries  # a clock a little ahead
    rates = traffic(entries, NOW)
    assert (rates.requests_per_minute, rates.refused_per_minute, rates.window_s) == (6, 3, 60)
    assert traffic([], NOW).requests_per_minute == 0


def test_entries_come_in_the_order_the_requests_came_in():
    """A long request's line is written (and timed) after its answer went out, by its own
    worker: the next, short request's line may carry an earlier time. Ordered by start."""
    long = line(ts=NOW + 0.120, seconds=0.100, user="admin", action="db:create_collection")
    short = line(ts=NOW + 0.110, seconds=0.002, user="unknown", status=403)
    entries = parse_lines([short, long]).entries
    assert [e.user for e in trail.select(entries, AuditFilter())] == ["admin", "unknown"]

def test_the_rates_leave_out_chromactls_own_requests():
    """status's probes (and up's, doctor's) name chromactl as their User-Agent: running status
    again and again does not raise the rates it shows. A line from before the agent was
    recorded reads as a client's."""
    from chromactl.probe import USER_AGENT

    entries = parse_lines([line(ts=NOW - 10, agent=USER_AGENT), line(ts=NOW - 9, status=401, agent=USER_AGENT),
                           line(ts=NOW - 8, agent="Chroma Python Client v1.5.9 (https://github.com/chroma-core/chroma)"),
                           line(ts=NOW - 7, agent="chromactl-look-alike"),
                           json.dumps({k: v for k, v in json.loads(line(ts=NOW - 6, status=403)).items()
                                       if k != "agent"})]).entries
    assert [e.agent for e in entries] == [USER_AGENT, USER_AGENT, entries[2].agent, "chromactl-look-alike", ""]
    rates = traffic(entries, NOW)
    assert (rates.requests_per_minute, rates.refused_per_minute) == (3, 1)

def test_the_archive_bound_deletes_the_oldest_and_keeps_the_newest_whatever_its_size():
    files = [(f"2026120{i}T000000000000Z-abc.jsonl", 10) for i in range(1, 6)]
    assert to_prune(files, max_files=3, max_bytes=1000) == [files[0][0], files[1][0]]
    assert to_prune(files, max_files=10, max_bytes=25) == [f[0] for f in files[:3]]
    assert to_prune([("new", 5000)], max_files=1, max_bytes=10) == []
    assert to_prune(list(reversed(files)), max_files=4, max_bytes=1000) == [files[0][0]]  # by name: by age
    assert to_prune(files) == []


def test_the_gateways_log_is_rotated_by_size_wherever_it_runs(tmp_path):
    from chromactl.manifests import render_compose
    from chromactl.spec import docker_run_command

    assert LOG_ROTATION.options() == {"max-size": "10m", "max-file": "5"}
    root = project_at(tmp_path)
    project = load_project(root)
    from chromactl.plan import plan_gateway

    spec = plan_gateway(project, (1000, 1000), "sha256:x", subnet="172.31.0.0/28").spec
    assert spec.log_rotation == LOG_ROTATION
    assert "--log-driver json-file --log-opt max-size=10m --log-opt max-file=5" in docker_run_command(spec, None)
    compose = render_compose(project, [], str(root), ".chromactl/compose-gateway", subnet="172.31.0.0/28")
    assert "max-size: 10m" in compose and "max-file: '5'" in compose and "driver: json-file" in compose


# --- the archive, with the fake engine ------------------------------------------------------


class Reporter:
    def step(self, message):
        pass

    def pull_event(self, event):
        pass

    def pull_done(self):
        pass

    def build_output(self, text):
        pass


@pytest.fixture
def engine(monkeypatch):
    engine = FakeEngine()
    engine.add_image("chromadb/chroma:1.5.9", working_dir="/data", command=("run", "/config.yaml"))
    engine.add_image("chromadb/chroma:0.6.3", working_dir="/chroma", command=None)
    engine.add_image("nginx:1.27.5", working_dir=None, command=None)
    monkeypatch.setattr(deploy_module, "HTTP_PROBER", FakeProber(engine))
    return engine


def project_at(tmp_path: Path, **given) -> Path:
    root = tmp_path / "proj"
    init_project(root, {"image": "chromadb/chroma:1.5.9", "host": "127.0.0.1", "port": 18000, **given})
    return root


def set_port(root: Path, port: int) -> None:
    path = root / "chromactl.yaml"
    path.write_text(path.read_text().replace("port: 18000", f"port: {port}"))


def served_lines(engine: FakeEngine, *lines: str) -> None:
    engine.write_stdout(GATEWAY, "".join(text + "\n" for text in lines))


def test_up_recreating_the_gateway_archives_its_log_first_0600_in_a_0700_folder(tmp_path, engine):
    root = project_at(tmp_path)
    deploy(load_project(root), engine, Reporter())
    first = engine.container(GATEWAY)
    served_lines(engine, line(ts=NOW - 100, user="admin"), line(ts=NOW - 90, user="rita", status=403, reason="role"))
    set_port(root, 18001)  # the gateway publishes the port: it is recreated
    engine.calls.clear()
    result = deploy(load_project(root), engine, Reporter())
    assert result.gateway_action is Action.RECREATED
    calls = [c for c in engine.calls if c[1] == GATEWAY]
    assert calls[:4] == [("stop", GATEWAY), ("read log", GATEWAY), ("remove", GATEWAY), ("create", GATEWAY)]
    [archived] = archive_files(root)
    assert archived.container_id == first.id[:12] and archived.path.name.endswith(f"-{first.id[:12]}.jsonl")
    assert stat.S_IMODE(archived.path.stat().st_mode) == 0o600
    assert stat.S_IMODE((root / AUDIT_DIR).stat().st_mode) == 0o700
    assert [e.user for e in parse_lines(archived.path.read_text().splitlines()).entries] == ["admin", "rita"]
    assert not list((root / ".chromactl/tmp").glob("*"))  # written atomically: nothing staged is left

    served_lines(engine, line(ts=NOW - 10, user="bob"))  # the new gateway's own lines
    found = audit(root, lambda: engine, now=NOW)
    assert [e.user for e in found.entries] == ["admin", "rita", "bob"]
    assert (found.archived_files, found.live, found.damaged) == (1, GATEWAY, 0)
    assert [e.user for e in audit(root, lambda: engine, since="30s", now=NOW).entries] == ["bob"]


def test_up_that_changes_nothing_archives_nothing_and_an_empty_log_leaves_no_file(tmp_path, engine):
    root = project_at(tmp_path)
    deploy(load_project(root), engine, Reporter())
    served_lines(engine, line())
    deploy(load_project(root), engine, Reporter())
    assert archive_files(root) == []
    down(root, lambda: engine)
    assert len(archive_files(root)) == 1
    deploy(load_project(root), engine, Reporter())
    down(root, lambda: engine)  # a gateway that logged nothing
    assert len(archive_files(root)) == 1


def test_down_archives_the_gateways_log_before_removing_it_and_audit_still_shows_it(tmp_path, engine):
    root = project_at(tmp_path)
    deploy(load_project(root), engine, Reporter())
    served_lines(engine, line(ts=NOW - 5, user="admin"), NGINX_MESSAGE, '{"audit":1,"ts":')
    engine.calls.clear()
    down(root, lambda: engine)
    assert engine.calls.index(("read log", GATEWAY)) < engine.calls.index(("remove", GATEWAY))
    assert engine.container(GATEWAY) is None
    found = audit(root, lambda: engine, now=NOW)
    assert ([e.user for e in found.entries], found.damaged, found.skipped, found.live) == (["admin"], 1, 1, None)


def test_an_archive_that_cannot_be_written_keeps_the_gateway(tmp_path, engine):
    root = project_at(tmp_path)
    deploy(load_project(root), engine, Reporter())
    served_lines(engine, line())
    (root / AUDIT_DIR).parent.mkdir(exist_ok=True)
    (root / AUDIT_DIR).write_text("in the way")  # a file where the folder belongs
    with pytest.raises(ChromactlError, match=f"cannot archive the audit trail of {GATEWAY} before removing it"):
        down(root, lambda: engine)
    assert engine.container(GATEWAY) is not None and ("remove", GATEWAY) not in engine.calls


def test_a_server_found_open_goes_even_when_its_audit_trail_cannot_be_archived(tmp_path, engine):
    root = project_at(tmp_path)
    deploy(load_project(root), engine, Reporter())
    served_lines(engine, line())
    (root / AUDIT_DIR).write_text("in the way")
    engine.server.enforces_auth = False
    with pytest.raises(ChromactlError, match="NOT enforced"):
        deploy(load_project(root), engine, Reporter())
    assert engine.container(GATEWAY) is None and engine.container("chromactl-proj") is None


def test_a_gateway_archived_but_not_removed_is_read_once(tmp_path, engine):
    """A removal that failed after its archive: the same lines are in the archive and the
    live log; the live log alone is read while that container is there."""
    root = project_at(tmp_path)
    deploy(load_project(root), engine, Reporter())
    served_lines(engine, line(user="admin"))
    from chromactl.audit_archive import archive_log

    archive_log(engine, root, engine.container(GATEWAY), now=NOW)
    archive_log(engine, root, engine.container(GATEWAY), now=NOW + 1)  # again: replaces the first
    assert len(archive_files(root)) == 1
    assert [e.user for e in audit(root, lambda: engine, now=NOW).entries] == ["admin"]


def test_the_archive_keeps_the_newest_files_within_its_bound(tmp_path, engine):
    root = project_at(tmp_path)
    folder = root / AUDIT_DIR
    folder.mkdir(parents=True)
    for n in range(trail.ARCHIVE_MAX_FILES + 5):
        (folder / archive_name(f"{n:012x}", NOW - 86400 + n)).write_text(line(ts=NOW - 86400 + n) + "\n")
    deploy(load_project(root), engine, Reporter())
    served_lines(engine, line(user="newest"))
    down(root, lambda: engine)
    kept = archive_files(root)
    assert len(kept) == trail.ARCHIVE_MAX_FILES and kept[-1].container_id != f"{0:012x}"
    assert kept[0].container_id == f"{6:012x}"  # the six oldest went
    assert audit(root, lambda: engine, now=NOW).entries[-1].user == "newest"


def test_status_shows_the_rates_of_a_running_gateway(tmp_path, engine):
    from chromactl.commands.status import recent_traffic

    root = project_at(tmp_path)
    deploy(load_project(root), engine, Reporter())
    served_lines(engine, line(ts=NOW - 120), line(ts=NOW - 30), line(ts=NOW - 20, status=403, reason="role"),
                 NGINX_MESSAGE)
    rates = recent_traffic(engine, engine.container(GATEWAY), now=NOW)
    assert (rates.requests_per_minute, rates.refused_per_minute) == (2, 1)
    engine.stop(GATEWAY)
    assert recent_traffic(engine, engine.container(GATEWAY), now=NOW) is None


# --- what `audit` prints ----------------------------------------------------------------------


def result_of(*lines: str, damaged: int = 0) -> AuditResult:
    return AuditResult(parse_lines(lines).entries, damaged, 0, 2, GATEWAY)


def test_the_table_fits_100_columns_and_escapes_what_clients_sent(capsys, monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)
    result = result_of(line(), line(user="a-rather-long-user-name-for-a-service", role="writer",
                                    action="collection:get_attached_function", tenant="customer-with-a-long-name",
                                    database="production-database-eu", status=403, reason="scope"),
                       line(user="", role="", action="unknown", tenant="", database="", collection="",
                            path="/x\x1b[2J", status=401, reason="no_credentials"),
                       line(user="unknown", action="auth:identity\x1b[31m", status=401, reason="bad_credentials"),
                       damaged=2)
    output.audit_result(result, as_json=False)
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert lines[0].split() == ["TIME", "(UTC)", "USER", "ROLE", "ACTION", "CODE", "REASON", "WHERE", "MS"]
    assert len(lines) == 5 and max(len(text) for text in lines) <= 100, captured.out
    assert "\x1b" not in captured.out and "\\x1b" in captured.out
    assert lines[1].split()[:7] == ["12-02", "04:36:44", "admin", "admin", "collection:add", "201", "-"]
    assert "default/default/" in lines[1]  # cut: the long values of other rows take the room
    assert "a-rather-lo…" in lines[2] and "collection:get_attach…" in lines[2] and "customer-with" in lines[2]
    assert "no_credentials" in lines[3] and " 401 " in lines[3]
    assert "2 damaged audit lines skipped" in captured.err and "4 requests, from 2 archived files" in captured.err


def test_typical_rows_leave_where_whole(capsys, monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)
    output.audit_result(result_of(line(), line(user="rita", role="reader", tenant="acme", database="prod",
                                               status=403, reason="role")), as_json=False)
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split() == ["12-02", "04:36:44", "admin", "admin", "collection:add", "201", "-",
                                "default/default/4b1c7f3e…", "4"]
    assert lines[2].split()[2:8] == ["rita", "reader", "collection:add", "403", "role", "acme/prod/4b1c7f3e…"]


def test_json_is_one_document_of_the_contract(capsys):
    output.audit_result(result_of(line(), line(user="unknown", status=401, reason="bad_credentials")), as_json=True)
    doc = document(capsys.readouterr().out, "audit")
    assert [e["user"] for e in doc["entries"]] == ["admin", "unknown"]
    assert doc["entries"][0]["collection"] == "4b1c7f3e-9a51-4c36-b7c5-0f2d52b1a7e9"
    assert (doc["damaged_lines"], doc["archived_files"], doc["live_gateway"]) == (0, 2, GATEWAY)


def test_nothing_matching_prints_no_table(capsys):
    output.audit_result(result_of(), as_json=False)
    captured = capsys.readouterr()
    assert captured.out == "" and "No requests match." in captured.err
