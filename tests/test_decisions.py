"""The decisions of up, creds, status, restore and upgrade, checked with a stand-in engine
(tests/fake_engine.py) in the fast suite: what is created, recreated, reloaded, stopped or
removed, and what is reported, for each state a deployment can be in. The Docker suite
checks the same commands against the real engine and real servers."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from chromactl import deploy as deploy_module
from chromactl.commands import creds, restore, status, upgrade
from chromactl.deploy import Action, Applied, apply_change, deploy
from chromactl.engine_api import EngineUnavailable
from chromactl.errors import EXIT_NOT_HEALTHY, ChromactlError
from chromactl.fingerprint import CHROMA_06, CHROMA_1X
from chromactl.project import load_project
from chromactl.records import revocation_pending, served
from chromactl.credentials import credential_digests
from chromactl.scaffold import init_project
from fake_engine import FakeEngine, FakeProber

GATEWAY_IMAGE = "nginx:1.27.5"


class Reporter:
    def __init__(self):
        self.steps: list[str] = []

    def step(self, message):
        self.steps.append(message)

    def pull_event(self, event):
        pass

    def pull_done(self):
        pass

    def build_output(self, text):
        pass

    def transfer(self, verb):
        return lambda done: None

    def transfer_done(self):
        pass


@pytest.fixture
def engine(monkeypatch):
    engine = FakeEngine()
    engine.add_image("chromadb/chroma:1.5.9", working_dir="/data", command=("run", "/config.yaml"))
    engine.add_image("chromadb/chroma:0.6.3", working_dir="/chroma", command=None)
    engine.add_image(GATEWAY_IMAGE, working_dir=None, command=None)
    prober = FakeProber(engine)
    monkeypatch.setattr(deploy_module, "HTTP_PROBER", prober)  # every deploy of the commands asks the fake
    engine.prober = prober
    return engine


def changes(engine, *kinds):
    """The effectful calls of those kinds on the project's containers (not the holders that
    copy files in and out of volumes, which are created and removed on every run)."""
    return [c for c in engine.calls if c[0] in kinds and not c[1].endswith("-holder")]


def project_at(tmp_path: Path, image="chromadb/chroma:1.5.9", **given):
    root = tmp_path / "proj"
    init_project(root, {"image": image, "host": "127.0.0.1", "port": 18000, **given})
    return root


def test_first_up_creates_the_gateway_then_chroma_in_its_namespace_and_proves_auth(tmp_path, engine):
    root = project_at(tmp_path)
    result = deploy(load_project(root), engine, Reporter())
    assert (result.action, result.gateway_action) == (Action.CREATED, Action.CREATED)
    assert sorted(call[1] for call in engine.calls if call[0] == "create") == ["chromactl-proj", "chromactl-proj-gateway"]
    chroma, gateway = engine.container("chromactl-proj"), engine.container("chromactl-proj-gateway")
    internal = engine.network("chromactl-proj-internal")
    # Chroma: on the internal network alone, at a static address; nothing published.
    assert chroma.published is None and chroma.networks == ("chromactl-proj-internal",)
    assert internal.internal and not internal.host_address and internal.subnet == "172.20.0.0/16"  # the engine's pick
    assert set(gateway.networks) == {"chromactl-proj", "chromactl-proj-internal"} and gateway.published
    assert internal.containers == {"chromactl-proj": chroma.addresses[0], "chromactl-proj-gateway": gateway.addresses[0]}
    # The gateway's nginx.conf, delivered through the engine into the project's config volume
    # (no bind mount of the project folder), sends requests to that address.
    conf = engine.volume_files("chromactl-proj-config")["nginx.conf"].decode()
    assert f"server {chroma.addresses[0]}:8000;" in conf
    assert not (root / ".chromactl/gateway").exists()
    assert result.auth.enforced and result.auth.accepted
    assert engine.prober.probed == ["heartbeat", "auth"]


def test_up_again_changes_nothing_and_a_credentials_change_reloads_the_gateway_only(tmp_path, engine):
    root = project_at(tmp_path)
    deploy(load_project(root), engine, Reporter())
    engine.calls.clear()
    again = deploy(load_project(root), engine, Reporter())
    assert (again.action, again.gateway_action) == (Action.UNCHANGED, Action.UNCHANGED)
    assert changes(engine, "create", "remove", "restart", "exec") == []

    creds.add_user(root, "rita", "reader", lambda kind: None, None, Reporter())
    applied = apply_change(load_project(root), lambda: engine, Reporter())
    assert applied is Applied.RELOADED
    # nginx -t first (nginx keeps its old configuration silently when a reload meets a bad one),
    # then the reload that waits until only new workers accept connections
    assert engine.calls[-2:] == [("exec", "chromactl-proj-gateway", "nginx"),
                                 ("exec", "chromactl-proj-gateway", "sh")]


def test_a_configuration_the_gateway_refuses_is_not_reloaded(tmp_path, engine):
    root = project_at(tmp_path)
    deploy(load_project(root), engine, Reporter())
    creds.add_user(root, "rita", "reader", lambda kind: None, None, Reporter())
    engine.check_fails = "nginx: [emerg] cannot load certificate"
    with pytest.raises(ChromactlError, match="refuses its new configuration"):
        deploy(load_project(root), engine, Reporter())
    assert ("exec", "chromactl-proj-gateway", "sh") not in engine.calls  # no reload


def test_natively_a_credentials_change_recreates_chroma_and_keeps_the_volume(tmp_path, engine):
    root = project_at(tmp_path, image="chromadb/chroma:0.6.3")
    first = deploy(load_project(root), engine, Reporter())
    assert first.gateway is None and engine.container("chromactl-proj").published == ("127.0.0.1", 18000)
    creds.add_user(root, "rita", "reader", lambda kind: None, None, Reporter())
    engine.calls.clear()
    assert apply_change(load_project(root), lambda: engine, Reporter()) is Applied.RECREATED
    assert ("remove", "chromactl-proj") in engine.calls and ("create", "chromactl-proj") in engine.calls
    assert ("remove volume", "chromactl-proj-data") not in engine.calls


def test_a_server_found_open_is_removed_at_once_and_the_volume_kept(tmp_path, engine):
    root = project_at(tmp_path, image="chromadb/chroma:0.6.3")
    engine.server.enforces_auth = False
    with pytest.raises(ChromactlError, match="NOT enforced") as refused:
        deploy(load_project(root), engine, Reporter())
    assert refused.value.exit_code == EXIT_NOT_HEALTHY
    assert engine.container("chromactl-proj") is None and engine.volume_exists("chromactl-proj-data")


def test_auth_checks_that_get_no_answer_are_asked_again_and_never_taken_for_an_open_server(tmp_path, engine,
                                                                                             monkeypatch):
    """No answer (a reload in progress, a dropped connection) proves nothing: asked again, and
    when it never answers the deployment is reported degraded with its containers kept."""
    import chromactl.deploy
    monkeypatch.setattr(chromactl.deploy, "PROBE_PAUSE_S", 0)
    root = project_at(tmp_path, image="chromadb/chroma:0.6.3")
    engine.server.mute_auth_checks = 3
    assert deploy(load_project(root), engine, Reporter()).auth.enforced
    engine.server.mute_auth_checks = 100
    with pytest.raises(ChromactlError, match="auth is not proven") as unproven:
        deploy(load_project(root), engine, Reporter())
    assert unproven.value.exit_code == EXIT_NOT_HEALTHY
    assert engine.container("chromactl-proj").state == "running"


def test_a_stranger_on_the_internal_network_gets_chroma_removed(tmp_path, engine):
    root = project_at(tmp_path)
    engine.server.stray_on_internal = "intruder"
    with pytest.raises(ChromactlError, match="shares network chromactl-proj-internal with intruder"):
        deploy(load_project(root), engine, Reporter())
    assert engine.container("chromactl-proj") is None and engine.volume_exists("chromactl-proj-data")


def test_an_internal_network_with_a_host_address_gets_chroma_removed(tmp_path, engine):
    root = project_at(tmp_path)
    engine.ensure_network("chromactl-proj-internal", str(root), subnet="172.31.9.0/28")  # not internal: made by hand
    with pytest.raises(ChromactlError, match="not internal or has an address on the host"):
        deploy(load_project(root), engine, Reporter())
    assert engine.container("chromactl-proj") is None


def test_the_internal_subnet_avoids_every_network_on_the_engine():
    from chromactl.plan import choose_subnet
    import ipaddress

    first = choose_subnet([], "/a/project")
    again = choose_subnet([first], "/a/project")
    assert ipaddress.ip_network(first).prefixlen == 28 and again != first
    assert not ipaddress.ip_network(again).overlaps(ipaddress.ip_network(first))
    with pytest.raises(ChromactlError, match="no free /28"):
        choose_subnet(["172.31.0.0/16"], "/a/project")
    assert ipaddress.ip_network(choose_subnet(["172.31.0.0/17"], "x")).subnet_of(ipaddress.ip_network("172.31.128.0/17"))


def test_a_container_that_exits_while_starting_is_stopped_with_its_exit_code(tmp_path, engine):
    root = project_at(tmp_path)
    engine.server.exits_at_start = True
    with pytest.raises(ChromactlError, match=r"exited while starting \(exit code 1\)") as failed:
        deploy(load_project(root), engine, Reporter())
    assert failed.value.exit_code == EXIT_NOT_HEALTHY
    assert engine.container("chromactl-proj").state == "exited"  # stopped: no crash loop


def test_up_never_takes_down_a_server_that_is_only_slow(tmp_path, engine):
    """A proof that runs out of time proves nothing unsafe: report, exit 4, leave it serving."""
    root = project_at(tmp_path)
    deploy(load_project(root), engine, Reporter())
    engine.server.answers = False  # a flood, say: the heartbeat does not come in time
    engine.calls.clear()
    with pytest.raises(ChromactlError, match="degraded") as degraded:
        deploy(load_project(root), engine, Reporter(), timeout=0.1)
    assert degraded.value.exit_code == EXIT_NOT_HEALTHY
    assert changes(engine, "stop", "remove") == []
    assert engine.container("chromactl-proj").state == engine.container("chromactl-proj-gateway").state == "running"


def test_a_gateway_restarted_by_the_engine_needs_nothing_from_up(tmp_path, engine):
    """With its own network, Chroma does not depend on the gateway's namespace: no restart."""
    root = project_at(tmp_path)
    deploy(load_project(root), engine, Reporter())
    engine.restart("chromactl-proj-gateway")
    engine.calls.clear()
    result = deploy(load_project(root), engine, Reporter())
    assert (result.action, result.gateway_action) == (Action.UNCHANGED, Action.UNCHANGED)
    assert not changes(engine, "restart", "create", "remove")


def test_a_stale_gateway_is_removed_when_the_project_has_none(tmp_path, engine):
    root = project_at(tmp_path, image="chromadb/chroma:0.6.3", gateway="nginx")
    deploy(load_project(root), engine, Reporter())
    init_project(root, {"gateway": "none"}, force=True)
    deploy(load_project(root), engine, Reporter())
    assert engine.container("chromactl-proj-gateway") is None
    assert engine.network("chromactl-proj-internal") is None and engine.network("chromactl-proj") is None


def test_apply_change_tells_where_the_change_went(tmp_path, engine):
    root = project_at(tmp_path)
    project = load_project(root)
    assert apply_change(project, lambda: engine, Reporter()) is Applied.NOT_RUNNING

    def unreachable():
        raise EngineUnavailable("no container engine answers at fake://engine", "fake://engine", "a test")

    assert apply_change(project, unreachable, Reporter()) is Applied.NO_ENGINE


def test_a_revocation_that_cannot_reach_a_running_server_exits_non_zero(tmp_path, engine):
    root = project_at(tmp_path)
    creds.add_user(root, "dan", "reader", lambda kind: None, None, Reporter())

    def unreachable():
        raise EngineUnavailable("no container engine answers at fake://engine", "fake://engine", "a test")

    # Never served: removing dan takes nothing away from any server, engine or not.
    assert creds.remove_user(root, "dan", unreachable, Reporter()).effect.exit_code == 0
    creds.add_user(root, "dan", "reader", lambda kind: None, None, Reporter())
    deploy(load_project(root), engine, Reporter())
    assert served(root) == credential_digests(load_project(root).credentials)
    removed = creds.remove_user(root, "dan", unreachable, Reporter())
    assert removed.effect.revocation_pending and removed.effect.exit_code == 3
    assert revocation_pending(root, credential_digests(load_project(root).credentials))
    # Adding a user takes nothing away: not reaching the server is no failure.
    added = creds.add_user(root, "erin", "reader", lambda kind: None, unreachable, Reporter())
    assert added.effect.applied is Applied.NO_ENGINE and added.effect.exit_code == 3  # dan's removal still pending
    deploy(load_project(root), engine, Reporter())
    assert not revocation_pending(root, credential_digests(load_project(root).credentials))
    rotated = creds.rotate_user(root, "erin", lambda kind: None, lambda: engine, Reporter())
    assert rotated.effect.applied is Applied.RELOADED and rotated.effect.exit_code == 0


def test_status_names_what_up_would_do(tmp_path, engine):
    root = project_at(tmp_path)
    deploy(load_project(root), engine, Reporter())
    [seen] = status.status(root, lambda: engine)
    assert seen.pending == () and seen.drift is False and seen.gateway.name == "chromactl-proj-gateway"
    creds.add_user(root, "rita", "reader", lambda kind: None, None, Reporter())
    [seen] = status.status(root, lambda: engine)
    assert [(p.action, p.target) for p in seen.pending] == [(status.Pending.RELOAD, "chromactl-proj-gateway")]
    init_project(root, {"port": 18001}, force=True)  # a new port: both containers are recreated
    [seen] = status.status(root, lambda: engine)
    assert status.PendingAction(status.Pending.RECREATE, "chromactl-proj-gateway") in seen.pending


# --- data: restore and upgrade, with real chroma.sqlite3 files in fake volumes -----------------


def chroma_files(tmp_path: Path, fingerprint: dict[str, int], records: int = 3) -> dict[str, bytes]:
    from test_archive import make_sqlite

    path = tmp_path / f"made-{records}.sqlite3"
    path.unlink(missing_ok=True)
    make_sqlite(path, migrations=fingerprint, records=records)
    return {"chroma.sqlite3": path.read_bytes(), "v1/data_level0.bin": b"\x01" * 100}


def test_a_restore_whose_proof_fails_switches_back_and_keeps_both_volumes(tmp_path, engine):
    from chromactl.commands.backup import backup

    root = project_at(tmp_path, auth="basic")  # basic: counts from chroma.sqlite3, no HTTP sampling
    deploy(load_project(root), engine, Reporter())
    engine.put_volume("chromactl-proj-data", chroma_files(tmp_path, CHROMA_1X.fingerprint, records=3))
    made = backup(root, tmp_path / "b.tar", lambda: engine, Reporter())
    assert made.manifest["records"] == 3

    # The new volume is filled from the backup, but the server answers nothing on it: the proof fails.
    original = engine.create_volume

    def create_volume(name, labels):
        engine.server.silent_on.add(name)
        original(name, labels)

    engine.create_volume = create_volume
    with pytest.raises(ChromactlError, match="restore failed") as failed:
        restore.restore(root, made.path, lambda: engine, Reporter(), confirm=lambda q: True, timeout=1)
    assert load_project(root).settings.data_volume is None  # pointed back at the previous volume
    assert engine.container("chromactl-proj").volume == "chromactl-proj-data"  # and serving from it
    kept = [v for v in engine._volumes if v.startswith("chromactl-proj-data-")]
    assert len(kept) == 1 and kept[0] in str(failed.value.hint)
    assert engine.volume_files(kept[0])["chroma.sqlite3"] == engine.volume_files("chromactl-proj-data")["chroma.sqlite3"]


def test_a_restore_declined_is_cancelled_and_changes_nothing(tmp_path, engine):
    from chromactl.commands.backup import backup
    from chromactl.errors import Cancelled

    root = project_at(tmp_path, auth="basic")
    deploy(load_project(root), engine, Reporter())
    engine.put_volume("chromactl-proj-data", chroma_files(tmp_path, CHROMA_1X.fingerprint))
    made = backup(root, tmp_path / "b.tar", lambda: engine, Reporter())
    before = set(engine._volumes)
    with pytest.raises(Cancelled):
        restore.restore(root, made.path, lambda: engine, Reporter(), confirm=lambda q: False)
    assert set(engine._volumes) == before


def test_an_upgrade_that_fails_its_proof_puts_every_file_back(tmp_path, engine):
    root = project_at(tmp_path, image="chromadb/chroma:0.6.3", auth="basic")
    deploy(load_project(root), engine, Reporter())
    engine.put_volume("chromactl-proj-data", chroma_files(tmp_path, CHROMA_06.fingerprint, records=5))
    before = {p.name: p.read_bytes() for p in root.iterdir() if p.is_file()}
    # Chroma 1.x would migrate the data; the fake does not, so the fingerprint proof fails.
    with pytest.raises(ChromactlError, match="upgrade failed, nothing was switched"):
        upgrade.upgrade(root, "chromadb/chroma:1.5.9", lambda: engine, Reporter(), confirm=lambda q: True)
    after = {p.name: p.read_bytes() for p in root.iterdir() if p.is_file()}
    assert after == before
    running = engine.container("chromactl-proj")
    assert running.state == "running" and running.image == "chromadb/chroma:0.6.3"
    assert running.volume == "chromactl-proj-data"


def test_rollback_refuses_a_previous_volume_that_holds_migrated_data(tmp_path, engine):
    from chromactl.records import record_upgrade

    root = project_at(tmp_path, auth="basic")
    init_project(root, {"data_volume": "chromactl-proj-data-new"}, force=True)
    engine.put_volume("chromactl-proj-data", chroma_files(tmp_path, CHROMA_1X.fingerprint))
    record_upgrade(root, {"created": "2026-12-01T00:00:00+00:00", "from_image": "chromadb/chroma:0.6.3",
                          "image": "chromadb/chroma:1.5.9", "previous_volume": "chromactl-proj-data",
                          "volume": "chromactl-proj-data-new", "backup": "b.tar", "files": {}})
    with pytest.raises(ChromactlError, match="refusing to run an old server on migrated data"):
        upgrade.rollback(root, lambda: engine, Reporter(), confirm=lambda q: True)
    assert not changes(engine, "create", "start")


def test_rollback_keeps_the_credentials_in_force_now(tmp_path, engine):
    """After an upgrade: rotate rita, add eve, remove dan; the rollback must not bring back
    rita's old token or dan, nor drop eve (it used to put back every file as it was)."""
    import base64

    from chromactl.records import record_upgrade
    from chromactl.settings import SETTINGS_FILE

    root = project_at(tmp_path, image="chromadb/chroma:0.6.3")
    for name in ("rita", "dan"):
        creds.add_user(root, name, "reader", lambda kind: None, None, Reporter())
    before = {name: (root / name).read_bytes() for name in (SETTINGS_FILE, ".chroma_env", "authz.yaml")}
    old_rita = load_project(root).credentials.get("rita").tokens
    # The upgrade's switch: 1.5.9 on a new volume, the old files kept in the note.
    init_project(root, {"image": "chromadb/chroma:1.5.9", "data_volume": "chromactl-proj-data-up"}, force=True)
    engine.put_volume("chromactl-proj-data", chroma_files(tmp_path, CHROMA_06.fingerprint))
    record_upgrade(root, {"created": "2026-12-01T00:00:00+00:00", "from_image": "chromadb/chroma:0.6.3",
                          "image": "chromadb/chroma:1.5.9", "previous_volume": "chromactl-proj-data",
                          "volume": "chromactl-proj-data-up", "backup": "b.tar",
                          "files": {k: base64.b64encode(v).decode() for k, v in before.items()}})
    creds.rotate_user(root, "rita", lambda kind: None, None, Reporter())
    creds.add_user(root, "eve", "admin", lambda kind: None, None, Reporter())
    creds.remove_user(root, "dan", None, Reporter())
    now = load_project(root).credentials

    back = upgrade.rollback(root, lambda: engine, Reporter(), confirm=lambda q: True)
    project = load_project(root)
    assert project.settings.image == "chromadb/chroma:0.6.3" and project.settings.data_volume is None
    assert project.credentials.get("rita").tokens == now.get("rita").tokens != old_rita
    assert project.credentials.get("eve").role == "admin" and project.credentials.get("dan") is None
    assert set(back.kept_users) == {"admin", "rita", "eve"}
    assert engine.container("chromactl-proj").image == "chromadb/chroma:0.6.3"


def test_a_vanished_data_volume_is_an_error_not_a_fresh_start(tmp_path, engine):
    root = project_at(tmp_path)
    deploy(load_project(root), engine, Reporter())
    for name in ("chromactl-proj", "chromactl-proj-gateway"):
        engine.remove(name)
    engine.remove_volume("chromactl-proj-data")  # `docker-compose down -v`, a prune, a mistake
    with pytest.raises(ChromactlError, match="data volume chromactl-proj-data is gone") as refused:
        deploy(load_project(root), engine, Reporter())
    assert "--start-empty" in refused.value.hint and engine.container("chromactl-proj") is None
    assert not engine.volume_exists("chromactl-proj-data")  # no silent new, empty volume
    deploy(load_project(root), engine, Reporter(), start_empty=True)  # the operator's explicit choice
    assert engine.volume_exists("chromactl-proj-data")


@pytest.mark.parametrize("shape, expected", [
    ({"command": ("run", "/config.yaml"), "files": {"/config.yaml": b"persist_path: /var/lib/chroma\n"}},
     "/var/lib/chroma"),
    ({"command": ("run", "--host", "0.0.0.0", "--path", "/srv/chroma")}, "/srv/chroma"),
    ({"command": ("run",), "labels": {"org.opencontainers.image.version": "1.5.9"}}, "/data"),
])
def test_the_data_path_of_an_untagged_image_comes_from_its_own_metadata(tmp_path, engine, shape, expected):
    engine.add_image("rt-chroma:stable", working_dir="/chroma", **shape)
    root = project_at(tmp_path, image="rt-chroma:stable", gateway="nginx")
    result = deploy(load_project(root), engine, Reporter())
    assert result.spec.data_path == expected  # never /chroma/chroma from the working directory


def test_an_image_whose_data_path_nothing_tells_is_refused_until_data_path_is_set(tmp_path, engine):
    engine.add_image("rt-chroma:stable", working_dir="/chroma", command=("serve",))
    root = project_at(tmp_path, image="rt-chroma:stable", gateway="nginx")
    with pytest.raises(ChromactlError, match="cannot tell where rt-chroma:stable keeps its data") as refused:
        deploy(load_project(root), engine, Reporter())
    assert "data_path" in refused.value.hint and engine.container("chromactl-proj") is None
    init_project(root, {"data_path": "/data"}, force=True)
    assert deploy(load_project(root), engine, Reporter()).spec.data_path == "/data"


def test_chroma_writing_outside_the_volume_is_stopped_before_it_takes_writes(tmp_path, engine):
    root = project_at(tmp_path, image="rt-chroma:stable", gateway="nginx", data_path="/wrong")
    engine.add_image("rt-chroma:stable")
    engine.server.writes_elsewhere = True
    with pytest.raises(ChromactlError, match="keeps no chroma.sqlite3 under /wrong"):
        deploy(load_project(root), engine, Reporter())
    assert engine.container("chromactl-proj").state == "exited"


def test_a_server_whose_roles_are_not_enforced_is_removed(tmp_path, engine):
    """Authentication alone is not the proof: the probe user's write beyond its role must be
    refused (a lowercase twin in .chroma_env once turned RBAC off while up said verified)."""
    root = project_at(tmp_path, image="chromadb/chroma:0.6.3")
    engine.server.enforces_rbac = False
    with pytest.raises(ChromactlError, match="RBAC is NOT enforced") as refused:
        deploy(load_project(root), engine, Reporter())
    assert refused.value.exit_code == EXIT_NOT_HEALTHY and engine.container("chromactl-proj") is None


@pytest.mark.parametrize("line", ["chroma_server_authz_provider=", "Chroma_Server_Authn_Provider=x",
                                  "CHROMA_SERVER_AUTH_IGNORE_PATHS={\"/api/v2/tenants\": [\"GET\", \"POST\"]}",
                                  "chroma_overwrite_singleton_tenant_database_access_from_auth=true"])
def test_a_chroma_env_line_that_weakens_auth_is_refused_by_name(tmp_path, engine, line):
    root = project_at(tmp_path, image="chromadb/chroma:0.6.3")
    with (root / ".chroma_env").open("a") as env:
        env.write(line + "\n")
    key = line.split("=")[0]
    with pytest.raises(ChromactlError, match=f".chroma_env: {key} is") as refused:
        deploy(load_project(root), engine, Reporter())
    assert "Chroma reads both" in refused.value.message or "authenticates" in refused.value.message
    assert engine.container("chromactl-proj") is None  # refused before anything starts


def test_natively_a_new_server_is_proven_on_loopback_before_it_is_published(tmp_path, engine):
    """An image that runs open (whatever its tag says) never serves beyond this machine."""
    root = project_at(tmp_path, image="chromadb/chroma:0.6.3", host="0.0.0.0", tls="off")
    engine.server.enforces_auth = False
    published = []
    original = engine.create_and_start

    def create_and_start(spec):
        published.append(spec.host)
        return original(spec)

    engine.create_and_start = create_and_start
    with pytest.raises(ChromactlError, match="NOT enforced"):
        deploy(load_project(root), engine, Reporter())
    assert published == ["127.0.0.1"] and engine.container("chromactl-proj") is None
    engine.server.enforces_auth = True
    deploy(load_project(root), engine, Reporter())
    assert published[1:] == ["127.0.0.1", "0.0.0.0"]  # proven on loopback, then published
    assert engine.container("chromactl-proj").published == ("0.0.0.0", 18000)


@pytest.mark.parametrize("address, host, refused", [
    ("ssh://ops@db.example.org", "127.0.0.1", True),  # that machine's loopback: nothing here reaches it
    ("tcp://10.1.2.3:2376", "::1", True),
    ("ssh://ops@db.example.org", "0.0.0.0", False),  # proven through db.example.org
    ("ssh://root@127.0.0.1:2222", "127.0.0.1", False),  # an engine on this very machine
    ("ssh://root@localhost", "127.0.0.1", False),
    ("unix:///var/run/docker.sock", "127.0.0.1", False),
])
def test_a_remote_engine_is_not_asked_to_publish_where_this_machine_cannot_prove_it(tmp_path, engine, address,
                                                                                    host, refused):
    root = project_at(tmp_path, host=host)
    engine.address = address
    if not refused:
        assert deploy(load_project(root), engine, Reporter()).auth.enforced
        return
    with pytest.raises(ChromactlError, match="out of this machine's reach") as raised:
        deploy(load_project(root), engine, Reporter())
    assert "--host 0.0.0.0" in raised.value.hint
    assert changes(engine, "create") == []
