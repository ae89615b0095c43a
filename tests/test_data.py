"""backup, restore and upgrade against a real Docker engine running real Chroma images,
with Chroma's real Python clients (tests/helpers/chroma_client.py) writing and reading."""

import io
import json
import os
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from conftest import HELPERS, IMAGE_063, IMAGE_159, add_user, admin_secret, ok, require, document, instances

pytestmark = pytest.mark.docker

GATEWAY_IMAGE = "chromactl-test/nginx:bookworm"
BROKEN_IMAGE = "chromactl-test/chroma-broken:1.99.0"
DIM = 64


@pytest.fixture
def data_projects(projects, docker_client):
    """projects(), and every volume restore or upgrade made for them removed afterwards."""
    made = []

    def new(*args, **kwargs):
        project = projects(*args, **kwargs)
        made.append(project)
        return project

    yield new
    for project in made:
        for container in docker_client.containers.list(all=True, filters={"label": f"org.chromactl.project={project.folder}"}):
            container.remove(force=True)
        for volume in docker_client.volumes.list(filters={"name": project.volume}):
            if volume.name.startswith(project.volume):
                volume.remove(force=True)


@pytest.fixture(scope="session")
def python_1x() -> str:
    python = os.environ.get("CHROMACTL_TEST_CHROMA_1X_PYTHON", "")
    require(bool(python) and Path(python).exists(), "CHROMACTL_TEST_CHROMA_1X_PYTHON must name a python with chromadb 1.x")
    return python


def request(url, token, ops, collection="docs", **extra) -> dict:
    return {"url": url, "auth": "token", "credentials": token, "header": "Authorization", "collection": collection,
            "ops": ops, **extra}


def client(python, url, token, ops, **extra) -> dict:
    done = subprocess.run([python, str(HELPERS / "chroma_client.py")], input=json.dumps(request(url, token, ops, **extra)),
                          capture_output=True, text=True, timeout=600, env={"PATH": os.environ["PATH"]})
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def sqlite_fingerprint(docker_client, volume: str, path: str = "/d") -> dict:
    """Which Chroma wrote a volume, read by the 0.6.3 image's Python from a read-only mount."""
    code = ("import sqlite3,json;db=sqlite3.connect('file:/d/chroma.sqlite3?mode=ro',uri=True);"
            "print(json.dumps(dict(db.execute('SELECT dir, MAX(version) FROM migrations GROUP BY dir').fetchall())))")
    out = docker_client.containers.run(IMAGE_063, ["-c", code], entrypoint="python3", remove=True, network_mode="none",
                                       volumes={volume: {"bind": path, "mode": "ro"}})
    return json.loads(out)


def test_backup_while_a_writer_runs_restores_one_moment(data_projects, chroma_python, tmp_path, docker_client):
    p = data_projects("--gateway", "none")
    token = admin_secret(p)
    ok(p("up"))
    filled = client(chroma_python, p.url, token, ["connect", "fill"], rows=25000, dim=DIM, batch=1000)
    assert filled["fill"] == "ok", filled

    stop_file = tmp_path / "stop-writer"
    writer = subprocess.Popen([chroma_python, str(HELPERS / "chroma_client.py")], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={"PATH": os.environ["PATH"]})
    writer.stdin.write(json.dumps(request(p.url, token, ["connect", "write_until"], stop_file=str(stop_file),
                                          dim=DIM, batch=200)))
    writer.stdin.close()
    time.sleep(3)  # the writer is well under way
    archive = tmp_path / "b.tar"
    result = p("backup", "-o", str(archive), "--json")
    time.sleep(2)  # and keeps writing after the server is back
    stop_file.touch()
    writer.wait(timeout=120)
    out, err = writer.stdout.read(), writer.stderr.read()
    assert writer.returncode == 0, err[-2000:]
    written = json.loads(out)["written"]
    doc = document(ok(result))

    manifest = doc["manifest"]
    assert oct(archive.stat().st_mode & 0o777) == "0o600" and doc["credentials"] is False
    assert manifest["fingerprint"] == {"embeddings_queue": 2, "metadb": 4, "sysdb": 9}
    assert doc["downtime_seconds"] is not None and doc["downtime_seconds"] < 60
    backed_up = manifest["records"]
    in_backup = backed_up - 25000
    # One moment in time: the base, and whole writer batches w0..w(n-1), nothing torn.
    assert 0 < in_backup < written and in_backup % 200 == 0, (in_backup, written)
    with tarfile.open(archive) as tar:
        assert not [n for n in tar.getnames() if "authz" in n or "probe-secret" in n or "htpasswd" in n]

    now = client(chroma_python, p.url, token, ["connect", "count"])
    assert now["count"] == "ok"
    restored = document(ok(p("restore", str(archive), "--yes", "--json")))
    assert restored["records"] == backed_up and restored["previous_volume"] == p.volume
    assert restored["volume"] != p.volume and docker_client.volumes.get(p.volume)  # the previous one is kept

    expect = [f"r{i}" for i in range(25000)] + [f"w{i}" for i in range(in_backup)]
    check = client(chroma_python, p.url, token, ["connect", "verify_ids"], expect_ids=expect, dim=DIM)
    assert check["verify_ids"] == "ok", check
    assert check["missing"] == 0 and check["count"] == backed_up, check
    assert check["self_nearest"] >= 0.9 * check["sampled"], check
    status = instances(p("status", "--json"))[0]
    assert status["volume"] == restored["volume"] and status["last_backup"]["path"] == str(archive)
    assert status["volume_bytes"] > 1_000_000
    downed = document(ok(p("down", "--json")))
    assert downed["volume"] == restored["volume"] and p.volume in downed["other_volumes"]


def test_restore_refuses_newer_older_and_damaged_data(data_projects, chroma_client, python_1x, tmp_path):
    old = data_projects("--gateway", "none")
    ok(old("up"))
    assert chroma_client(old.url, "token", admin_secret(old), ["connect", "create", "add"])["add"] == "ok"
    old_backup = tmp_path / "old.tar"
    ok(old("backup", "-o", str(old_backup)))

    new = data_projects("--gateway-image", GATEWAY_IMAGE, image=IMAGE_159)
    ok(new("up"))
    assert client(python_1x, new.url, admin_secret(new), ["connect", "create", "add"])["add"] == "ok"
    new_backup = tmp_path / "new.tar"
    ok(new("backup", "-o", str(new_backup)))

    before = {p.name: (p.folder / "chromactl.yaml").read_text() for p in (old, new)}
    newer = old("restore", str(new_backup), "--yes")
    assert newer.returncode == 1 and "newer than chromactl-test/chroma:0.6.3 reads" in newer.stderr, newer.stderr
    older = new("restore", str(old_backup), "--yes")
    assert older.returncode == 1 and "chromactl upgrade --image" in older.stderr, older.stderr

    damaged = tmp_path / "damaged.tar"
    data = bytearray(new_backup.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 16] = bytes(b ^ 0xFF for b in data[middle:middle + 16])  # flipped bits in the payload
    damaged.write_bytes(bytes(data))
    refused = new("restore", str(damaged), "--yes")
    assert refused.returncode == 1 and "damaged" in refused.stderr, refused.stderr
    truncated = tmp_path / "truncated.tar"
    truncated.write_bytes(new_backup.read_bytes()[: len(data) // 3])
    refused = new("restore", str(truncated), "--yes")
    assert refused.returncode == 1 and "chromactl: error:" in refused.stderr, refused.stderr
    no_confirm = new("restore", str(new_backup))  # stdin is not a terminal: no silent replace
    assert no_confirm.returncode == 1 and "--yes" in no_confirm.stderr

    for p in (old, new):  # nothing switched
        assert (p.folder / "chromactl.yaml").read_text() == before[p.name]
        assert instances(p("status", "--json"))[0]["volume"] == p.volume


def test_upgrade_063_to_159_keeps_records_and_roles_then_rolls_back(data_projects, chroma_python, python_1x,
                                                                    docker_client):
    p = data_projects("--gateway", "none", "--gateway-image", GATEWAY_IMAGE)
    admin = admin_secret(p)
    writer, reader = add_user(p, "wanda", "writer"), add_user(p, "rita", "reader")
    ok(p("up"))
    assert client(chroma_python, p.url, admin, ["connect", "fill"], rows=5000, dim=DIM)["fill"] == "ok"
    legacy = client(chroma_python, p.url, admin, ["connect", "create", "add", "query"], collection="legacy")
    assert legacy["query_ids"] == ["a"], legacy

    result = p("upgrade", "--image", IMAGE_159, "--yes", "--json")
    doc = document(ok(result))
    assert doc["records"] == 5002 and doc["gateway"] == {"container": f"{p.container}-gateway"} and doc["previous_volume"] == p.volume, doc
    assert any("sample queries answer as before" in line for line in doc["verified"]), doc
    assert Path(doc["backup"]).is_file()
    assert sqlite_fingerprint(docker_client, p.volume) == {"embeddings_queue": 2, "metadb": 4, "sysdb": 9}
    assert sqlite_fingerprint(docker_client, doc["volume"]) == {"embeddings_queue": 2, "metadb": 6, "sysdb": 10}

    # Chroma 1.5.9 behind the gateway: the same tokens, the same roles.
    assert docker_client.containers.get(f"{p.container}-gateway").status == "running"
    docs = [f"r{i}" for i in range(5000)]
    got = client(python_1x, p.url, admin, ["connect", "verify_ids"], expect_ids=docs, dim=DIM)
    assert got["missing"] == 0 and got["count"] == 5000 and got["self_nearest"] >= 0.9 * got["sampled"], got
    read = client(python_1x, p.url, reader, ["connect", "query", "get", "add"], collection="legacy")
    assert read["query_ids"] == ["a"] and read["add"] == "denied", read
    write = client(python_1x, p.url, writer, ["connect", "add", "delete_collection"], collection="legacy")
    assert write["add"] == "ok" and write["delete_collection"] == "denied", write
    assert client(python_1x, p.url, "Z" * 40, ["connect"])["connect"] == "denied"

    # Credentials changed after the upgrade stay as they are now: the rollback brings back
    # neither a rotated-away token nor a removed user, and keeps a user added since.
    rotated = document(ok(p("creds", "rotate", "rita", "--json")))["secret"]
    eve = add_user(p, "eve", "admin")
    ok(p("creds", "rm", "wanda"))
    back = document(ok(p("upgrade", "--rollback", "--yes", "--json")))
    assert back["volume"] == p.volume and back["abandoned_volume"] == doc["volume"]
    again = client(chroma_python, p.url, admin, ["connect", "verify_ids"], expect_ids=docs, dim=DIM)
    assert again["missing"] == 0 and again["count"] == 5000, again
    assert client(chroma_python, p.url, reader, ["connect"])["connect"] == "denied"  # rita's old token
    assert client(chroma_python, p.url, writer, ["connect"])["connect"] == "denied"  # wanda, removed
    assert client(chroma_python, p.url, rotated, ["connect", "get"], collection="legacy")["get_ids"] == ["a", "b"]
    assert client(chroma_python, p.url, eve, ["connect", "get"], collection="legacy")["get_ids"] == ["a", "b"]
    users = {u["user"] for u in document(ok(p("creds", "list", "--json")))["users"]}
    assert {"admin", "rita", "eve"} <= users and "wanda" not in users, users
    assert sqlite_fingerprint(docker_client, p.volume) == {"embeddings_queue": 2, "metadb": 4, "sysdb": 9}


@pytest.fixture
def broken_image(docker_client):
    dockerfile = f'FROM {IMAGE_159}\nENTRYPOINT ["/bin/sh", "-c", "echo cannot start >&2; exit 3"]\n'
    docker_client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=BROKEN_IMAGE, rm=True)
    yield BROKEN_IMAGE
    docker_client.images.remove(BROKEN_IMAGE, force=True)


def test_an_upgrade_that_cannot_start_leaves_the_old_instance_untouched(data_projects, chroma_python, broken_image,
                                                                        docker_client):
    p = data_projects("--gateway", "none", "--gateway-image", GATEWAY_IMAGE)
    admin = admin_secret(p)
    ok(p("up"))
    assert client(chroma_python, p.url, admin, ["connect", "fill"], rows=3000, dim=DIM)["fill"] == "ok"
    files = {name: (p.folder / name).read_bytes() for name in ("chromactl.yaml", ".chroma_env", "authz.yaml")}

    failed = p("upgrade", "--image", broken_image, "--yes")
    assert failed.returncode != 0
    assert "nothing was switched" in failed.stderr and "runs again on chromactl-test/chroma:0.6.3" in failed.stderr, \
        failed.stderr
    assert {name: (p.folder / name).read_bytes() for name in files} == files
    container = docker_client.containers.get(p.container)
    assert container.status == "running" and IMAGE_063 in container.image.tags
    assert [m["Name"] for m in container.attrs["Mounts"] if m["Type"] == "volume" and m["RW"]] == [p.volume]
    kept = client(chroma_python, p.url, admin, ["connect", "verify_ids"], expect_ids=[f"r{i}" for i in range(3000)],
                  dim=DIM)
    assert kept["missing"] == 0 and kept["count"] == 3000, kept
    assert sqlite_fingerprint(docker_client, p.volume) == {"embeddings_queue": 2, "metadb": 4, "sysdb": 9}
    with pytest.raises(Exception):
        docker_client.containers.get(f"{p.container}-gateway")
    assert list((p.folder / "backups").iterdir())  # the mandatory backup was taken
