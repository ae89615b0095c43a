"""up, status, down and logs against a real Docker engine running real Chroma images
(built locally by ci/chroma-images.sh), reached by Chroma's real Python client."""

import json
import os
import secrets
import socket
import subprocess
import sys

import pytest

from conftest import (
    assert_no_way_around,
    serves,
    document,
    instances,
    COLLECTIONS,
    IMAGE_063,
    IMAGE_159,
    IMAGE_UNTAGGED,
    add_user,
    admin_secret,
    http_status,
    ok,
    require,
    run_chromactl,
    up,
)

pytestmark = pytest.mark.docker


def test_token_rbac_end_to_end_with_the_real_client(projects, chroma_client):
    p = projects()
    admin = admin_secret(p)
    writer = add_user(p, "wanda", "writer")
    reader = add_user(p, "rita", "reader")
    result, doc = up(p)
    assert result.returncode == 0, result.stderr
    assert doc["action"] == "created" and doc["chroma_version"] == "0.6.3" and doc["auth"] == {"mode": "token", "enforced": True}
    assert doc["url"] == p.url and doc["volume"] == p.volume
    assert admin not in result.stdout + result.stderr  # secrets are never echoed by up

    assert http_status(p.url + COLLECTIONS) == 403
    done = chroma_client(p.url, "token", admin, ["connect", "create", "add", "query", "count"])
    assert done["query_ids"] == ["a"] and done["count"] == "ok", done
    read = chroma_client(p.url, "token", reader, ["connect", "query", "get", "add"])
    assert read["query"] == "ok" and read["add"] == "denied", read
    write = chroma_client(p.url, "token", writer, ["connect", "add", "delete_collection"])
    assert write["add"] == "ok" and write["delete_collection"] == "denied", write
    assert chroma_client(p.url, "token", "Z" * 40, ["connect"])["connect"] == "denied"


def test_basic_auth_and_x_chroma_token(projects, chroma_client):
    basic = projects("--auth", "basic")
    reader = add_user(basic, "rita", "reader")
    add_user(basic, "adam", "admin", stdin="adam-pass-long-enough", flag="--password-stdin")
    ok(basic("up"))
    done = chroma_client(basic.url, "basic", "adam:adam-pass-long-enough", ["connect", "create", "add", "count"])
    assert done["count"] == "ok", done
    read = chroma_client(basic.url, "basic", f"rita:{reader}", ["connect", "get", "add"])
    assert read["get"] == "ok" and read["add"] == "denied", read
    assert chroma_client(basic.url, "basic", "adam:wrong", ["connect"])["connect"] == "denied"

    header = projects("--token-header", "X-Chroma-Token")
    ok(header("up"))
    token = admin_secret(header)
    assert http_status(header.url + COLLECTIONS, {"X-Chroma-Token": token}) == 200
    assert http_status(header.url + COLLECTIONS, {"Authorization": f"Bearer {token}"}) == 403
    done = chroma_client(header.url, "token", token, ["connect", "create", "count"], header="X-Chroma-Token")
    assert done["count"] == "ok", done


def test_idempotent_recreate_on_change_and_data_survives(projects, chroma_client, docker_client):
    p = projects()
    admin = admin_secret(p)
    _, first = up(p)
    chroma_client(p.url, "token", admin, ["connect", "create", "add"])
    started = docker_client.containers.get(p.container).attrs["State"]["StartedAt"]

    result, again = up(p)
    assert again["action"] == "unchanged", result.stderr
    container = docker_client.containers.get(p.container)
    assert container.attrs["State"]["StartedAt"] == started  # not restarted

    status = instances(p("status", "--json"))
    assert status[0]["drift"] is False
    # --no-apply: only the files change; up applies them (below).
    new_token = document(ok(p("creds", "rotate", "admin", "--no-apply", "--json")))["secret"]
    status = instances(p("status", "--json"))
    assert status[0]["drift"] is True
    assert "recreate needed" in p("status").stdout

    result, changed = up(p)
    assert changed["action"] == "recreated", result.stderr
    assert docker_client.containers.get(p.container).id != container.id
    assert chroma_client(p.url, "token", admin, ["connect"])["connect"] == "denied"  # the rotated token
    kept = chroma_client(p.url, "token", new_token, ["connect", "count", "get"])
    assert kept["get_ids"] == ["a", "b"], kept

    ok(p("down"))
    assert not docker_client.containers.list(all=True, filters={"name": p.container})
    _, again = up(p)
    assert again["action"] == "created"
    assert chroma_client(p.url, "token", new_token, ["connect", "get"])["get_ids"] == ["a", "b"]


def test_up_in_an_empty_folder_runs_init_first(projects, chroma_client):
    p = projects(init=False)
    env = {"CHROMACTL_IMAGE": IMAGE_063, "CHROMACTL_PORT": str(p.port), "CHROMACTL_HOST": "127.0.0.1",
           "CHROMACTL_NAME": p.name}
    result, doc = up(p, env=env)
    assert result.returncode == 0, result.stderr
    assert doc["init"]["user"] == "admin" and doc["action"] == "created"
    assert http_status(p.url + COLLECTIONS, {"Authorization": "Bearer " + doc["init"]["secret"]}) == 200
    human = projects(init=False)
    env.update(CHROMACTL_PORT=str(human.port), CHROMACTL_NAME=human.name)
    result = ok(human("up", env=env))
    token = admin_secret(human)
    assert result.stdout.count(token) == 1  # shown once, before the server is started


def test_auth_on_a_1x_tag_is_refused_before_anything_starts(projects, docker_client):
    p = projects("--gateway", "none", image=IMAGE_159)
    result = p("up")
    assert result.returncode == 1
    assert "refusing auth token" in result.stderr and "ignores every auth setting" in result.stderr
    assert "chromadb/chroma:0.6.3" in result.stderr
    assert not docker_client.containers.list(all=True, filters={"name": p.container})
    latest = projects("--gateway", "none", image="chromadb/chroma:latest")
    assert latest("up").returncode == 1


def test_auth_none_runs_on_1x(projects):
    p = projects("--auth", "none", image=IMAGE_159)
    result, doc = up(p)
    assert result.returncode == 0, result.stderr
    assert doc["auth"] == {"mode": "none", "enforced": None} and doc["api_version"] == "1.0.0"
    status = instances(ok(p("status", "--json")))[0]
    assert status["healthy"] is True and status["auth"]["enforced"] is None or status["auth"]["enforced"] is False


def test_probe_catches_a_server_that_ignores_auth(projects, docker_client):
    p = projects(image=IMAGE_UNTAGGED)
    result = p("up")
    assert result.returncode == 4, result.stderr
    assert "NOT enforced" in result.stderr and "removed" in result.stderr
    assert not docker_client.containers.list(all=True, filters={"name": p.container})
    assert docker_client.volumes.get(p.volume)  # the data is kept


def test_dry_run_changes_nothing_and_shows_no_secret(projects, docker_client):
    p = projects()
    result = ok(p("up", "--dry-run"))
    assert result.stdout.startswith("docker run ") and f"--env-file {p.folder}/.chroma_env" in result.stdout
    # The credential files reach Chroma from the project's config volume, read-only.
    assert f"--volume chromactl-{p.name}-config:/etc/chromactl:ro" in result.stdout
    assert f"{p.volume}:/chroma/chroma" in result.stdout and f"127.0.0.1:{p.port}:8000" in result.stdout
    assert admin_secret(p) not in result.stdout
    assert not docker_client.containers.list(all=True, filters={"name": p.container})


def test_pull_from_a_loopback_registry_with_progress(projects, docker_client, tmp_path):
    require(http_status("http://127.0.0.1:5000/v2/") == 200, "a registry on 127.0.0.1:5000 (ci/registry.sh)")
    # An image with a layer of its own, pushed and then removed here, so the pull really
    # downloads (the base layers are shared with the test image and already present).
    context = tmp_path / "pushed"
    context.mkdir()
    (context / "marker").write_bytes(os.urandom(256 * 1024))
    (context / "Dockerfile").write_text(f"FROM {IMAGE_063}\nCOPY marker /marker\n")
    repository = "127.0.0.1:5000/chroma-pulltest"
    tag = "0.6.3-" + secrets.token_hex(3)
    image = f"{repository}:{tag}"
    docker_client.images.build(path=str(context), tag=image, rm=True)
    for line in docker_client.images.push(repository, tag=tag, stream=True, decode=True):
        assert "error" not in line, line
    docker_client.images.remove(image, force=True)

    p = projects(image=image)
    try:
        result, doc = up(p)
        assert result.returncode == 0, result.stderr
        assert f"pulling {image}" in result.stderr
        assert "Pull complete" in result.stderr and "Already exists" in result.stderr  # per layer
        assert doc["auth"]["enforced"] is True
    finally:
        for c in docker_client.containers.list(all=True, filters={"name": p.container}):
            c.remove(force=True)
        docker_client.images.remove(image, force=True)

    missing = projects(image="127.0.0.1:5000/chroma:0.6.99")
    result = missing("up")
    assert result.returncode == 1 and "cannot pull" in result.stderr and "--build" in result.stderr
    result = missing("up", "--pull", "never")
    assert result.returncode == 1 and "not present" in result.stderr and "--build" in result.stderr


def test_build_from_a_local_folder(projects, docker_client, tmp_path):
    context = tmp_path / "context"
    context.mkdir()
    (context / "Dockerfile").write_text(f"FROM {IMAGE_063}\nLABEL org.example.built-by=chromactl-test\n")
    tag = f"chromactl-test/built-{secrets.token_hex(3)}:0.6.3"
    p = projects(image=tag)
    try:
        result, doc = up(p, "--build", str(context))
        assert result.returncode == 0, result.stderr
        assert "Step 1/2" in result.stderr and doc["auth"]["enforced"] is True
        assert docker_client.images.get(tag).labels["org.example.built-by"] == "chromactl-test"
        result = p("up", "--build", str(tmp_path / "nowhere"))
        assert result.returncode == 1 and "no such folder" in result.stderr
    finally:
        for c in docker_client.containers.list(all=True, filters={"name": p.container}):
            c.remove(force=True)
        docker_client.images.remove(tag, force=True)


def test_status_all_and_containers_changed_behind_chromactls_back(projects, docker_client):
    one, two = projects(), projects("--auth", "basic")
    ok(one("up"))
    ok(two("up"))
    result = one("status", "--all", "--json")  # other projects on the engine may be unhealthy: exit 0 or 4
    assert result.returncode in (0, 4), result.stderr
    listed = instances(result)
    mine = {i["name"]: i for i in listed if i["name"] in (one.name, two.name)}
    assert set(mine) == {one.name, two.name}
    for instance in mine.values():
        assert set(instance) == {"name", "container", "state", "healthy", "heartbeat_ms", "chroma_version",
                                 "api_version", "image", "url", "volume", "project", "auth", "gateway", "drift",
                                 "pending", "problem", "hint", "costly_users", "tls", "volume_bytes", "last_backup",
                                 "origin", "traffic"}
        assert instance["healthy"] and instance["auth"]["enforced"] is True and instance["state"] == "running"
    assert mine[two.name]["auth"]["mode"] == "basic"

    docker_client.containers.get(one.container).kill()
    result = one("status", "--json")
    assert result.returncode == 4 and instances(result)[0]["state"] == "exited"
    result, doc = up(one)
    assert doc["action"] == "started", result.stderr

    docker_client.containers.get(two.container).remove(force=True)
    result = two("status", "--json")
    assert result.returncode == 4 and instances(result)[0]["state"] == "missing"
    _, doc = up(two)
    assert doc["action"] == "created"


def test_port_in_use_is_named_and_nothing_is_left(projects, docker_client):
    p = projects()
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", p.port))
        blocker.listen()
        result = p("up")
    assert result.returncode == 1, result.stderr
    assert f"port {p.port} on 127.0.0.1 is already in use" in result.stderr
    assert not docker_client.containers.list(all=True, filters={"name": p.container})

    other = projects()
    ok(other("up"))
    clash = projects()
    ok(clash("init", "--force", "--port", str(other.port)))
    result = clash("up")
    assert result.returncode == 1 and f"in use by container {other.container}" in result.stderr


def test_a_server_that_crashes_shows_its_logs(projects, docker_client):
    p = projects("--auth", "none")
    with open(p.folder / ".chroma_env", "a") as env:
        # (IS_PERSISTENT, used before, is overridden by the image's entrypoint, as upstream's is.)
        env.write("ALLOW_RESET=not-a-boolean\n")
    result = p("up", "--timeout", "40")
    assert result.returncode == 4, result.stderr
    assert "exited while starting" in result.stderr
    assert "ALLOW_RESET" in result.stderr or "allow_reset" in result.stderr  # the server's own last words
    assert docker_client.containers.get(p.container).status != "running"


def test_engine_unreachable(projects):
    p = projects()
    for command in (["up"], ["status"], ["down"], ["logs"]):
        result = p(*command, env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"})
        assert result.returncode == 3, (command, result.stderr)
        assert "no container engine answers at unix:///nonexistent/docker.sock (from DOCKER_HOST)" in result.stderr
        assert "dockerd" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_down_keeps_the_volume_unless_confirmed_and_logs(projects, docker_client):
    p = projects()
    ok(p("up"))
    logs = ok(p("logs", "-n", "5"))
    assert "heartbeat" in logs.stdout or "GET /api" in logs.stdout
    assert len(logs.stdout.strip().splitlines()) <= 5
    result = p("down", "--volumes")  # no terminal, no --yes
    assert result.returncode == 1 and "--yes" in result.stderr
    assert docker_client.containers.get(p.container).status == "running"  # nothing done
    ok(p("down"))
    assert docker_client.volumes.get(p.volume)
    result = ok(p("down", "--volumes", "--yes", "--json"))
    assert document(result)["volume_removed"] is True
    assert not [v for v in docker_client.volumes.list() if v.name == p.volume]
    result = p("logs")
    assert result.returncode == 1 and "no container" in result.stderr


def test_no_project_and_foreign_container(projects, docker_client, tmp_path):
    empty = tmp_path / "nothing"
    empty.mkdir()
    for command in (["status"], ["down"], ["logs"], ["up", "--dry-run"]):
        result = run_chromactl(*command, cwd=empty)
        assert result.returncode == 1 and "no chromactl project" in result.stderr, command
    p = projects()
    squatter = docker_client.containers.create(IMAGE_063, name=p.container)
    try:
        result = p("up")
        assert result.returncode == 1 and "already exists" in result.stderr
    finally:
        squatter.remove(force=True)


restarts_engine = pytest.mark.skipif(
    os.environ.get("CHROMACTL_TEST_RESTART_ENGINE") != "1",
    reason="restarts the Docker engine: set CHROMACTL_TEST_RESTART_ENGINE=1 (scripts/test does in CI)")


def restart_engine(while_down=None) -> None:
    """Stop the suite's dockerd, run `while_down()`, start it again as ci/docker-engine.sh does."""
    from conftest import start_engine, stop_engine

    stop_engine()
    try:
        if while_down:
            while_down()
    finally:  # the engine comes back whatever happened: later tests need it
        start_engine()


@restarts_engine
def test_engine_restart(projects, chroma_client):
    import time

    p = projects()
    ok(p("up"))
    token = admin_secret(p)
    chroma_client(p.url, "token", token, ["connect", "create", "add"])

    def engine_unreachable():
        result = p("status")
        assert result.returncode == 3 and "no container engine answers" in result.stderr

    restart_engine(engine_unreachable)
    deadline = time.monotonic() + 90
    while True:  # the container comes back by itself (restart policy unless-stopped)
        result = p("status", "--json")
        if result.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert result.returncode == 0, result.stdout + result.stderr
    assert instances(result)[0]["auth"]["enforced"] is True
    assert chroma_client(p.url, "token", token, ["connect", "get"])["get_ids"] == ["a", "b"]


def test_creds_changes_apply_at_once_natively(projects, chroma_client):
    """0.6.3 reads its credentials at start: a rotation recreates it, and says so."""
    p = projects()
    ok(p("up"))
    old = admin_secret(p)
    chroma_client(p.url, "token", old, ["connect", "create", "add"])
    rotated = document(ok(p("creds", "rotate", "admin", "--json")))
    assert rotated["applied"]["outcome"] == "recreated", rotated["applied"]
    assert chroma_client(p.url, "token", old, ["connect"])["connect"] == "denied"
    assert chroma_client(p.url, "token", rotated["secret"], ["connect", "get"])["get_ids"] == ["a", "b"]
    assert instances(ok(p("status", "--json")))[0]["pending"] == []


def test_status_asks_the_engine_from_one_thread(projects, monkeypatch):
    """The Docker SDK's client is not promised to be thread safe: status may probe several
    instances in parallel over HTTP, but every engine call comes from the calling thread."""
    import threading

    from chromactl import engine as engine_module
    from chromactl.commands.status import status

    started = [projects() for _ in range(3)]
    for p in started:
        ok(p("up"))
    threads = set()

    def recording_connect():
        engine = engine_module.DockerEngine.connect()
        for name in ("container", "containers", "image", "network", "volume_mountpoint", "subnets"):
            method = getattr(engine, name)

            def recorded(*args, _method=method, **kwargs):
                threads.add(threading.get_ident())
                return _method(*args, **kwargs)

            setattr(engine, name, recorded)
        return engine

    seen = {i.name: i for i in status(None, recording_connect)}  # every instance on the engine
    assert all(seen[p.name].healthy for p in started), seen
    assert threads == {threading.get_ident()}


@restarts_engine
def test_engine_restart_behind_the_gateway(projects, chroma_client_1x, docker_client):
    """A graceful engine restart (as `systemctl restart docker`): both containers come back by
    their restart policy alone, with no chromactl command in between; `status` then says
    healthy, the data is there and Chroma is still out of reach but through the gateway."""
    import time

    p = projects("--gateway-image", "chromactl-test/nginx:bookworm", image=IMAGE_159)
    ok(p("up"))
    token = admin_secret(p)
    chroma_client_1x(p.url, "token", token, ["connect", "create", "add"])
    restart_engine()
    seconds = serves(p, token, within=90)  # nothing run in between: only the engine's restart policy
    print(f"served again {seconds:.1f} s after the engine answered")
    assert chroma_client_1x(p.url, "token", token, ["connect", "get"])["get_ids"] == ["a", "b"]
    deadline = time.monotonic() + 30
    while not (status := instances(p("status", "--json"))[0])["healthy"] and time.monotonic() < deadline:
        time.sleep(1)
    assert status["healthy"] and status["pending"] == [], status
    assert_no_way_around(p, docker_client)


def test_up_waits_for_a_run_that_holds_the_project(projects):
    """Two runs at once: `up` holds the project's lock exclusively while it changes anything.
    Held here only shared (as a run that reads the project holds it, which lets other readers
    through), `up` waits, creating nothing, and goes on once the lock is free."""
    import os
    import time

    from chromactl import fsio
    from chromactl.project import LOCK_FILE

    p = projects()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHROMACTL_")}
    with fsio.locked(p.folder / LOCK_FILE, shared=True, root=p.folder):
        process = subprocess.Popen([sys.executable, "-m", "chromactl", "up"], cwd=p.folder, env=env, text=True,
                                   stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(5)
        waiting = process.poll() is None
        created = http_status_or_none(p.url + "/api/v2/heartbeat")
    _, err = process.communicate(timeout=180)
    assert waiting and created is None, f"up went on while the project was held: exit {process.returncode}: {err}"
    assert process.returncode == 0, err
    assert http_status(p.url + "/api/v2/heartbeat") == 200


def http_status_or_none(url: str) -> int | None:
    try:
        return http_status(url)
    except OSError:
        return None
