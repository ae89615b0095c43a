"""What `chromactl status` prints, without an engine: one block per instance that fits a
100-column terminal with every value whole, the full table (--wide), `-o env` lines a
shell can eval, and the choice of output checked before anything is asked of the engine.
(The Docker suite runs the same through the CLI against real instances.)"""

from __future__ import annotations

import datetime
import re
import subprocess
from pathlib import Path

import pytest

from chromactl import output
from chromactl.certs import TlsMaterial
from chromactl.commands.status import InstanceStatus, Pending, PendingAction
from chromactl.engine_api import ContainerInfo
from chromactl.tls import CertInfo
from conftest import document

NAME = "search-production-eu-west-1"
PROJECT = "/srv/chromactl/projects/search-production-eu-west-1/deeper/folders/x"
CA = PROJECT + "/.chromactl/tls/ca.pem"  # 90 characters: fits on a line of its own only
IMAGE = "registry.internal.example.com:5000/mirrors/chromadb/chroma:1.5.9"
PROBLEM = ("port 18431 does not answer although the containers run (Docker's userland proxy for it may have "
           "died)")
HINT = "`chromactl up` restarts the gateway, which publishes the port again"


def material(days: int = 300, ca: str = CA) -> TlsMaterial:
    info = CertInfo(("localhost", "127.0.0.1"), datetime.datetime.now(datetime.timezone.utc)
                    + datetime.timedelta(days=days, hours=1), ":".join(["AB"] * 32))
    return TlsMaterial("cert", "key", Path(ca), info, None)


def instance(**changes) -> InstanceStatus:
    fields = dict(
        name=NAME, container=f"chromactl-{NAME}", state="running", healthy=True, heartbeat_ms=3.4,
        api_version="1.0.0", image=IMAGE, url="https://[2001:db8:ffff:ffff:ffff:ffff:ffff:fffe]:18431",
        volume=f"chromactl-{NAME}-data-20261201T010203Z-abcd", auth_mode="token", auth_enforced=True, drift=False,
        project=PROJECT,
        gateway=ContainerInfo("id", f"chromactl-{NAME}-gateway", "running", "nginx:1.27.5"),
        pending=(), tls=material(), tls_mode="auto", volume_bytes=3 * 1024 * 1024,
        last_backup={"path": PROJECT + "/backups/nightly.tar", "created": "2026-12-01T01:02:03Z",
                     "sha256": "ab" * 32, "age_seconds": 7200, "exists": True})
    fields.update(changes)
    return InstanceStatus(**fields)


def troubled() -> InstanceStatus:
    return instance(
        healthy=False, heartbeat_ms=None, auth_enforced=None, problem=PROBLEM, hint=HINT, costly_users=("alice",),
        pending=(PendingAction(Pending.RECREATE, f"chromactl-{NAME}"),
                 PendingAction(Pending.RELOAD, f"chromactl-{NAME}-gateway")),
        tls=material(days=12), last_backup=None)


def whole_values(i: InstanceStatus) -> list[str]:
    """Values that must appear unbroken on one line."""
    values = [i.name, i.container, i.image, i.url, i.volume, i.project, str(i.tls.ca_path) if i.tls else None,
              i.gateway.name if i.gateway else None, i.chroma_version,
              i.last_backup["path"] if i.last_backup else None]
    return [v for v in values if v]


def sentences(i: InstanceStatus) -> list[str]:
    """Prose that may wrap at spaces, but must be all there."""
    return [s for s in (i.problem, i.hint, *(output.pending_text(p) for p in i.pending or ())) if s]


@pytest.mark.parametrize("make", [instance, troubled], ids=["healthy", "troubled"])
def test_a_block_fits_100_columns_with_every_value_whole(make):
    i = make()
    text = output.status_blocks([i, instance(name="small", container="chromactl-small", gateway=None)], width=100)
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 100, "\n".join(line for line in lines if len(line) > 100)
    for value in whole_values(i):
        assert any(value in line for line in lines), value
    flat = " ".join(" ".join(text.split()).split())
    for sentence in sentences(i):
        assert sentence in flat, sentence
    assert lines[0] == f"{NAME}: running, {'healthy' if i.healthy else 'NOT HEALTHY'}"
    # A value too long to sit beside its key has a line of its own, indented under it.
    assert f"  ca:\n    {CA}\n" in text
    assert "\nsmall: running, healthy\n" in text  # one block per instance, a blank line between


def test_a_troubled_instance_says_what_is_wrong_and_what_to_do():
    text = output.status_blocks([troubled()], width=100)
    assert "\n  problem:     port 18431 does not answer" in text
    assert "\n  fix:         `chromactl up` restarts the gateway" in text
    assert f"\n  pending:     recreate needed: chromactl-{NAME}\n" in text
    assert f"\n               reload needed: chromactl-{NAME}-gateway (credentials or\n" in text
    assert "warning" not in text  # warnings go to stderr (test_pretty_is_what_status_prints_by_default)
    assert "auth:        token (not probed), by the gateway" in text


def test_a_narrow_terminal_still_gets_every_value_whole():
    i = troubled()
    lines = output.status_blocks([i], width=60).splitlines()
    for value in whole_values(i):
        assert any(value in line for line in lines), value
    too_long = [line for line in lines if len(line) > 60]
    # Only a value that cannot fit even on a line of its own may pass the edge, and it is whole.
    assert too_long and all(any(line.startswith("    " + v) for v in whole_values(i)) for line in too_long), too_long


@pytest.mark.parametrize("state, url, expected", [
    ("missing", "https://127.0.0.1:8000", ["missing, NOT HEALTHY", "url:         https://127.0.0.1:8000"]),
    ("exited", "http://127.0.0.1:8000", ["exited, NOT HEALTHY", "tls:         off"]),
])
def test_instances_that_do_not_run(state, url, expected):
    i = instance(state=state, healthy=False, heartbeat_ms=None, api_version=None, url=url, auth_enforced=None,
                 tls=None if url.startswith("http:") else material(), pending=None, gateway=None, volume_bytes=None)
    text = output.status_blocks([i], width=100)
    for words in expected:
        assert words in text, text
    assert "heartbeat" not in text and "pending:     cannot tell" in text
    assert ("fix:         `chromactl up` creates and starts it" if state == "missing" else
            "fix:         `chromactl up` starts it again (`chromactl logs` shows why it stopped)") in text


def test_auth_none_is_said_plainly():
    text = output.status_blocks([instance(auth_mode="none", auth_enforced=None, gateway=None)], width=100)
    assert "auth:        none: anyone who reaches the port can read and change all data" in text


def test_the_wide_table_has_every_column_and_cuts_nothing(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    output.status_result([troubled()], "table")
    out = capsys.readouterr()
    header, row = out.out.splitlines()[:2]
    assert header.split() == ["NAME", "STATE", "HEALTHY", "HEARTBEAT", "VERSION", "URL", "AUTH", "PENDING", "IMAGE",
                              "VOLUME"]
    for value in (NAME, IMAGE, troubled().url, troubled().volume, "recreate needed: chromactl-" + NAME):
        assert value in row
    assert len(row) > 200 and row == row.rstrip()
    assert PROBLEM in out.err  # the problems, on stderr under the table


def test_pretty_is_what_status_prints_by_default(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    output.status_result([troubled()], "pretty")
    printed = capsys.readouterr()
    assert printed.out == output.status_blocks([troubled()], 100)
    warnings = " ".join(printed.err.split())
    assert f"warning: {NAME}: its certificate expires in 12 days: `chromactl tls renew`" in warnings
    assert "every request naming alice costs the server a slow bcrypt hash" in warnings
    monkeypatch.setenv("COLUMNS", "72")
    output.status_result([troubled()], "pretty")
    assert capsys.readouterr().out == output.status_blocks([troubled()], 72)


def test_a_gateway_projects_block_and_json_show_the_last_minutes_rates(capsys):
    from chromactl.audit import Traffic

    i = instance(traffic=Traffic(42, 7.5), tls=None)
    text = output.status_blocks([i], width=100)
    assert "  traffic:     42 requests/min, 7.5 refused/min (401, 403, 429) in the last minute\n" in text
    assert "traffic:" not in output.status_blocks([instance()], width=100)
    output.status_result([i], "json")
    doc = document(capsys.readouterr().out, "status")
    assert doc["instances"][0]["traffic"] == {"window_seconds": 60, "requests_per_minute": 42,
                                              "refused_per_minute": 7.5}


def test_json_is_the_documented_document(capsys, tmp_path):
    from chromactl.tls import new_ca

    (tmp_path / "ca.pem").write_text(new_ca("p").cert)
    output.status_result([instance(tls=material(ca=str(tmp_path / "ca.pem")), problem=PROBLEM)], "json")
    doc = document(capsys.readouterr().out, "status")
    assert doc["instances"][0]["url"] == troubled().url and doc["instances"][0]["problem"] == PROBLEM


HOSTILE = "/tmp/it's a \"folder\" with $(touch PWNED) and `touch PWNED2`;\nnext"


def test_env_lines_are_what_a_shell_reads_back(tmp_path, capsys):
    i = instance(project=HOSTILE, name="x y", api_version=None)
    output.status_result([i], "env")
    text = capsys.readouterr().out
    assert [line.split("=", 1)[0] for line in text.splitlines() if re.match(r"^[A-Z_]+=", line)] == \
        list(output.ENV_KEYS)
    script = text + "".join(f'printf "%s\\0" "${key}"\n' for key in output.ENV_KEYS)
    read = subprocess.run(["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True, check=True)
    values = dict(zip(output.ENV_KEYS, read.stdout.split("\0")))
    assert values == {
        "CHROMA_NAME": "x y", "CHROMA_URL": i.url, "CHROMA_HOST": "2001:db8:ffff:ffff:ffff:ffff:ffff:fffe",
        "CHROMA_PORT": "18431", "CHROMA_SSL": "true", "CHROMA_CA": CA, "CHROMA_AUTH": "token",
        "CHROMA_STATE": "running", "CHROMA_HEALTHY": "true", "CHROMA_VERSION": "1.5.9", "CHROMA_API_VERSION": "",
        "CHROMA_IMAGE": IMAGE, "CHROMA_CONTAINER": i.container, "CHROMA_GATEWAY": i.gateway.name,
        "CHROMA_VOLUME": i.volume, "CHROMA_PROJECT": HOSTILE}
    assert not list(tmp_path.iterdir())  # nothing ran


def test_env_without_tls_says_so():
    text = output.status_env(instance(url="http://127.0.0.1:8000", tls=None, gateway=None))
    assert "CHROMA_SSL=false\n" in text and "CHROMA_CA=''\n" in text and "CHROMA_GATEWAY=''\n" in text


@pytest.mark.parametrize("args, words", [
    (["status", "--json", "-o", "env"], "choose different outputs"),
    (["status", "--wide", "-o", "json"], "choose different outputs"),
    (["status", "--wide", "--json"], "choose different outputs"),
    (["status", "-o", "env", "--all"], "one project's variables"),
    (["status", "-o", "yaml"], "'yaml' is not one of"),
])
def test_output_choices_that_contradict_are_usage_errors_before_the_engine(chromactl, args, words):
    result = chromactl(*args, env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"})
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert words in result.stderr + result.stdout and "docker.sock" not in result.stderr + result.stdout


def test_o_json_errors_are_json_too(chromactl):
    """`-o json` is `--json`: an error is one document as well."""
    from conftest import ok

    ok(chromactl("init", "--host", "127.0.0.1", "--json"))
    for flag in (["-o", "json"], ["--output", "json"], ["--output=json"], ["-ojson"], ["--json"]):
        result = chromactl("status", *flag, env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"})
        assert result.returncode == 3
        assert "docker.sock" in document(result, "status")["error"]["message"]


@pytest.mark.parametrize("tls, scheme", [("auto", "https"), ("off", "http")])
def test_a_project_whose_containers_are_gone_shows_the_scheme_it_serves(tmp_path, tls, scheme):
    from chromactl.commands import status
    from chromactl.scaffold import init_project
    from fake_engine import FakeEngine

    root = tmp_path / "proj"
    init_project(root, {"image": "chromadb/chroma:1.5.9", "host": "127.0.0.1", "port": 18000, "tls": tls})
    [seen] = status.status(root, lambda: FakeEngine())
    assert (seen.state, seen.url, seen.healthy) == ("missing", f"{scheme}://127.0.0.1:18000", False)
    assert (seen.tls is not None, seen.tls_mode) == ((True, "auto") if tls == "auto" else (False, None))
    text = output.status_blocks([seen], 100)
    assert f"url:         {scheme}://127.0.0.1:18000" in text
    if tls == "auto":
        assert f"ca:          {root}/.chromactl/tls/ca.pem" in text or f"    {root}/.chromactl/tls/ca.pem" in text


# --- tls renew says how the new certificate reached the server, for every outcome --------------


def test_tls_renew_says_what_became_of_the_certificate_for_every_outcome():
    from chromactl.deploy import Applied

    sentences = {applied: output.renewed_sentence(applied) for applied in Applied}
    assert len(set(sentences.values())) == len(Applied)  # each outcome its own words
    for applied, sentence in sentences.items():
        assert "credential" not in sentence  # a certificate, not credentials
        assert sentence.startswith("In service now") == applied.in_effect or applied is Applied.NOT_RUNNING, applied
        if not applied.in_effect:
            assert sentence.startswith(("NOT in service", "Not in service")), sentence
    assert sentences[Applied.RELOADED] == "In service now: the gateway reloaded it (Chroma kept running)."
    assert "`chromactl export compose`" in sentences[Applied.COMPOSE]


def test_tls_renew_prints_the_sentence_and_the_new_ca(capsys, tmp_path):
    from types import SimpleNamespace

    from chromactl.deploy import Applied
    from chromactl.tls import new_ca

    (tmp_path / "ca.pem").write_text(new_ca("p").cert)
    result = SimpleNamespace(material=material(ca=str(tmp_path / "ca.pem")), mode="auto", ca_fingerprint="AB",
                             port=8000, applied=Applied.COMPOSE, new_ca=True)
    output.tls_result(result, as_json=False, renewed=True)
    first = capsys.readouterr().out.splitlines()[0]
    assert first == ("Issued a new CA and server certificate. NOT in service: Compose runs this project; export it "
                     "again (`chromactl export compose`) and restart it.")


def test_the_readme_shows_status_as_it_prints():
    """README's example is what status_blocks prints for the same instance: it cannot drift."""
    from chromactl.audit import Traffic
    from conftest import REPO

    readme = (REPO / "README.md").read_text()
    shown = readme.split("```text\n$ chromactl status\n", 1)[1].split("```", 1)[0]
    i = instance(name="search", container="chromactl-search", heartbeat_ms=9.2, image="chromadb/chroma:1.5.9",
                 url="https://127.0.0.1:8000", volume="chromactl-search-data", project="/home/ana/search",
                 gateway=ContainerInfo("id", "chromactl-search-gateway", "running", "nginx:1.27.5"),
                 tls=material(days=396, ca="/home/ana/search/.chromactl/tls/ca.pem"),
                 volume_bytes=int(0.2 * 1024 * 1024), last_backup=None, traffic=Traffic(42, 3))
    assert output.status_blocks([i], 100) == shown
