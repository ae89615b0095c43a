"""The nginx gateway in front of the real Chroma 1.5.9 server (which enforces no auth of
its own), driven by Chroma 1.5.9's real Python client. The gateway image is Debian's
nginx, built locally like the Chroma images (ci/chroma-images.sh), since no registry is
reachable; chromactl itself defaults to the official nginx image."""

import json
import time
import urllib.request

import pytest
import yaml

from conftest import IMAGE_063, IMAGE_159, COLLECTIONS, add_user, admin_secret, free_port, http_status, ok, up, document, instances

GATEWAY_IMAGE = "chromactl-test/nginx:bookworm"

pytestmark = pytest.mark.docker


@pytest.fixture
def gateway_project(projects, docker_client):
    try:
        docker_client.images.get(GATEWAY_IMAGE)
    except Exception:
        pytest.fail(f"the locally built image {GATEWAY_IMAGE} is missing (ci/chroma-images.sh builds it)")

    def new(*args):
        return projects("--gateway-image", GATEWAY_IMAGE, *args, image=IMAGE_159)

    return new


def test_token_roles_through_the_gateway(gateway_project, chroma_client_1x, docker_client):
    p = gateway_project()
    assert yaml.safe_load((p.folder / "chromactl.yaml").read_text())["gateway"] == "nginx"  # the default for 1.x
    admin = admin_secret(p)
    writer = add_user(p, "wanda", "writer")
    reader = add_user(p, "rita", "reader")
    result, doc = up(p)
    assert result.returncode == 0, result.stderr
    assert doc["gateway"] == {"container": f"{p.container}-gateway", "action": "created"}
    assert doc["auth"] == {"mode": "token", "enforced": True}
    assert doc["chroma_version"] == "1.5.9" and doc["api_version"] == "1.0.0"  # the tag, and what the API says

    chroma = docker_client.containers.get(p.container)
    assert not chroma.attrs["HostConfig"]["PortBindings"]  # reachable only through the gateway
    # Chroma is on the internal network alone; the gateway on it and on the project's network.
    gateway = docker_client.containers.get(p.container + "-gateway")
    assert list(chroma.attrs["NetworkSettings"]["Networks"]) == [f"{p.container}-internal"]
    assert set(gateway.attrs["NetworkSettings"]["Networks"]) == {p.container, f"{p.container}-internal"}
    assert gateway.attrs["HostConfig"]["Tmpfs"] == {"/tmp": ""}

    assert http_status(p.url + "/api/v2/heartbeat") == 200 and http_status(p.url + "/api/v2/version") == 200
    assert http_status(p.url + COLLECTIONS) == 403
    request = urllib.request.Request(p.url + COLLECTIONS)
    try:
        urllib.request.urlopen(request)
    except urllib.error.HTTPError as refused:
        assert json.loads(refused.read()) == {"error": "AuthError", "message": "Forbidden"}

    done = chroma_client_1x(p.url, "token", admin, ["connect", "create", "add", "query", "count", "get"])
    assert done["query_ids"] == ["a"] and done["get"] == "ok", done
    read = chroma_client_1x(p.url, "token", reader, ["connect", "list", "query", "count", "get", "add"])
    assert [read[op] for op in ("connect", "list", "query", "count", "get")] == ["ok"] * 5, read
    assert read["add"] == "denied", read
    write = chroma_client_1x(p.url, "token", writer, ["connect", "add", "count", "delete_collection"])
    assert write["add"] == "ok" and write["delete_collection"] == "denied", write
    assert chroma_client_1x(p.url, "token", "W" * 40, ["connect"])["connect"] == "denied"
    assert chroma_client_1x(p.url, "token", admin.lower(), ["connect"])["connect"] == "denied"  # case matters
    assert chroma_client_1x(p.url, "token", admin, ["connect", "delete_collection"])["delete_collection"] == "ok"
    # A raw path that nginx and Chroma could read differently is refused outright.
    assert http_status(p.url + COLLECTIONS + "/x/add/%2E%2E/get", {"Authorization": "Bearer " + reader}) == 400

    time.sleep(1.5)  # the gateway writes its buffered log lines out every second
    status = instances(ok(p("status", "--json")))[0]
    assert status["healthy"] and status["auth"]["enforced"] is True
    assert status["gateway"] == {"container": f"{p.container}-gateway", "state": "running"}
    logged = ok(p("logs", "--service", "gateway", "-n", "20")).stdout
    assert '"method":"GET","path":"/api/v2/' in logged and '"user":"wanda"' in logged and reader not in logged
    # status's rates: the clients' requests of this test, not chromactl's own probes.
    assert status["traffic"]["requests_per_minute"] > 0 and status["traffic"]["refused_per_minute"] > 0, status
    again = instances(ok(p("status", "--json")))[0]["traffic"]
    assert again["requests_per_minute"] <= status["traffic"]["requests_per_minute"], (status["traffic"], again)


def test_x_chroma_token_and_basic_auth(gateway_project, chroma_client_1x, docker_client):
    header = gateway_project("--token-header", "X-Chroma-Token")
    ok(header("up"))
    token = admin_secret(header)
    assert http_status(header.url + COLLECTIONS, {"X-Chroma-Token": token}) == 200
    assert http_status(header.url + COLLECTIONS, {"Authorization": f"Bearer {token}"}) == 403
    done = chroma_client_1x(header.url, "token", token, ["connect", "create", "count"], header="X-Chroma-Token")
    assert done["count"] == "ok", done

    basic = gateway_project("--auth", "basic")
    reader = add_user(basic, "rita", "reader")
    add_user(basic, "adam", "admin", stdin="adam-pass-long-enough", flag="--password-stdin")
    ok(basic("up"))
    # Delivered into the project's config volume (no bind mount of the project folder), readable
    # by the gateway's own unprivileged user alone (chromactl runs as root here).
    listing = docker_client.containers.get(basic.container + "-gateway").exec_run(
        ["stat", "-c", "%a %u %n", "/etc/chromactl-gateway/server.htpasswd", "/etc/chromactl-gateway/nginx.conf"])
    assert listing.exit_code == 0 and listing.output.decode().split() == [
        "600", "10101", "/etc/chromactl-gateway/server.htpasswd", "600", "10101", "/etc/chromactl-gateway/nginx.conf"]
    assert not (basic.folder / ".chromactl/gateway").exists()
    done = chroma_client_1x(basic.url, "basic", "adam:adam-pass-long-enough", ["connect", "create", "add", "count"])
    assert done["count"] == "ok", done
    read = chroma_client_1x(basic.url, "basic", f"rita:{reader}", ["connect", "get", "add"])
    assert read["get"] == "ok" and read["add"] == "denied", read
    assert chroma_client_1x(basic.url, "basic", "adam:wrong", ["connect"])["connect"] == "denied"
    assert chroma_client_1x(basic.url, "basic", "nobody:adam-pass-long-enough", ["connect"])["connect"] == "denied"
    assert http_status(basic.url + COLLECTIONS) in (401, 403)


def test_creds_change_reloads_the_gateway_without_restarting_chroma(gateway_project, chroma_client_1x,
                                                                     docker_client):
    p = gateway_project()
    old = admin_secret(p)
    ok(p("up"))
    chroma_client_1x(p.url, "token", old, ["connect", "create", "add"])
    chroma_started = docker_client.containers.get(p.container).attrs["State"]["StartedAt"]
    gateway_started = docker_client.containers.get(p.container + "-gateway").attrs["State"]["StartedAt"]

    new = document(ok(p("creds", "rotate", "admin", "--no-apply", "--json")))["secret"]
    pending = p("status", "--json")  # the old token still works there: a revocation pending is unhealthy
    seen = instances(pending)[0]
    assert pending.returncode == 4 and "revocation" in seen["problem"] and seen["drift"] is True, seen
    assert seen["pending"] == [{"action": "reload", "target": f"{p.container}-gateway"}]
    result, doc = up(p)
    assert doc["action"] == "unchanged" and doc["gateway"]["action"] == "reloaded", result.stderr
    assert docker_client.containers.get(p.container).attrs["State"]["StartedAt"] == chroma_started
    assert docker_client.containers.get(p.container + "-gateway").attrs["State"]["StartedAt"] == gateway_started
    assert chroma_client_1x(p.url, "token", old, ["connect"])["connect"] == "denied"
    assert chroma_client_1x(p.url, "token", new, ["connect", "get"])["get_ids"] == ["a", "b"]
    assert instances(ok(p("status", "--json")))[0]["drift"] is False

    ok(p("down"))
    assert not docker_client.networks.list(names=[p.container])
    _, doc = up(p)
    assert doc["action"] == "created"
    assert chroma_client_1x(p.url, "token", new, ["connect", "get"])["get_ids"] == ["a", "b"]  # data kept


def test_a_large_batch_write_passes(gateway_project, chroma_client_1x):
    p = gateway_project("--no-rbac")
    ok(p("up"))
    done = chroma_client_1x(p.url, "token", admin_secret(p), ["connect", "create", "add_large", "count"])
    assert done["add_large"] == "ok" and done["count"] == "ok", done


def test_route_table_covers_every_route_the_server_publishes(docker_client):
    """Fails when the 1.x image has a route the table does not classify."""
    from chromactl.routes import classify

    port = free_port()
    container = docker_client.containers.run(IMAGE_159, detach=True, ports={"8000/tcp": ("127.0.0.1", port)},
                                             labels={"org.chromactl.test": "openapi"})
    try:
        import time
        deadline = time.monotonic() + 60
        document = None
        while time.monotonic() < deadline and document is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/openapi.json", timeout=2) as response:
                    document = json.load(response)
            except OSError:
                time.sleep(0.3)
        assert document, "no /openapi.json from the 1.5.9 server"
        routes = [(m.upper(), path) for path, ops in document["paths"].items() for m in ops]
        unknown = [r for r in routes if classify(*r) == "unknown"]
        assert not unknown, f"routes the gateway's table does not classify: {unknown}"
        assert len(routes) >= 30
    finally:
        container.remove(force=True)


def test_a_gateway_that_cannot_start_shows_its_log(projects, docker_client):
    p = projects("--gateway-image", IMAGE_063, image=IMAGE_159)  # an image without nginx
    result = p("up", "--timeout", "30")
    assert result.returncode in (1, 4), result.stderr
    assert "gateway" in result.stderr
    running = [c for c in docker_client.containers.list() if c.name.startswith(p.container)]
    # The gateway is stopped (no crash loop); Chroma may run, reachable by nothing: nothing serves.
    assert [c.name for c in running] in ([], [p.container]), running
    assert all(not c.attrs["HostConfig"]["PortBindings"] for c in running)


def test_gateway_on_0x_and_dry_run(projects, chroma_client, docker_client):
    p = projects("--gateway", "nginx", "--gateway-image", GATEWAY_IMAGE, image=IMAGE_063)
    dry = ok(p("up", "--dry-run")).stdout
    lines = dry.splitlines()
    gateway_run = next(line for line in lines if f"--name {p.container}-gateway " in line)
    chroma_run = next(line for line in lines if f"--name {p.container} " in line)
    # Only the gateway publishes; Chroma is on the internal network (no address on the host).
    assert f"docker network create {p.container}" in dry and "--publish" in gateway_run
    assert "--publish" not in chroma_run and admin_secret(p) not in dry
    assert f"--network {p.container}-internal" in chroma_run and "--internal" in dry
    assert "com.docker.network.bridge.inhibit_ipv4=true" in dry
    ok(p("up"))
    done = chroma_client(p.url, "token", admin_secret(p), ["connect", "create", "count"])
    assert done["count"] == "ok", done
    assert http_status(p.url + COLLECTIONS) == 403

    # Dropping the gateway: up removes it and Chroma 0.6.3 enforces the same credentials itself.
    ok(p("init", "--force", "--gateway", "none"))
    result, doc = up(p)
    assert result.returncode == 0 and doc["gateway"] is None, result.stderr
    assert doc["auth"]["enforced"] is True and doc["action"] == "recreated"
    assert not docker_client.containers.list(all=True, filters={"name": p.container + "-gateway"})
    assert chroma_client(p.url, "token", admin_secret(p), ["connect", "count"])["count"] == "ok"


def test_exported_compose_runs_the_gateway_too(gateway_project, chroma_client_1x, docker_client):
    import shutil
    import subprocess
    import time

    compose = shutil.which("docker-compose")
    assert compose, "Debian's docker-compose is needed"
    p = gateway_project()
    reader = add_user(p, "rita", "reader")
    ok(p("export", "compose", "-o", "compose.yaml"))
    base = [compose, "-f", str(p.folder / "compose.yaml"), "-p", "chromactlgw" + str(p.port)]
    try:
        started = subprocess.run(base + ["up", "-d"], capture_output=True, text=True, timeout=300)
        assert started.returncode == 0, started.stderr
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if http_status(p.url + "/api/v2/heartbeat") == 200:
                    break
            except OSError:
                pass
            time.sleep(0.3)
        assert http_status(p.url + COLLECTIONS) == 403
        done = chroma_client_1x(p.url, "token", admin_secret(p), ["connect", "create", "add", "count"])
        assert done["count"] == "ok", done
        read = chroma_client_1x(p.url, "token", reader, ["connect", "get", "add"])
        assert read["get"] == "ok" and read["add"] == "denied", read
        chroma = [c for c in docker_client.containers.list(filters={"label": f"org.chromactl.project={p.folder}"})
                  if "gateway" not in c.name]
        assert chroma and not chroma[0].attrs["HostConfig"]["PortBindings"]
    finally:
        subprocess.run(base + ["down", "-v"], capture_output=True, text=True, timeout=120)


def test_exported_kubernetes_puts_the_gateway_in_the_pod(gateway_project, tmp_path):
    import base64
    import sys
    from pathlib import Path

    p = gateway_project("--auth", "basic")
    ok(p("export", "kubernetes", "-o", str(tmp_path / "k8s.yaml")))
    validator = Path(sys.executable).parent / "kubernetes-validate"
    check = __import__("subprocess").run([str(validator), "--strict", str(tmp_path / "k8s.yaml")],
                                         capture_output=True, text=True)
    assert check.returncode == 0 and check.stdout.count("passed") == 4, check.stdout + check.stderr
    secret, statefulset, service, policy = yaml.safe_load_all((tmp_path / "k8s.yaml").read_text())
    config = base64.b64decode(secret["data"]["gateway.nginx.conf"]).decode()
    assert "listen 8080;" in config and "server 127.0.0.1:8000;" in config
    htpasswd = base64.b64decode(secret["data"]["gateway.server.htpasswd"]).decode()
    assert htpasswd == (p.folder / "server.htpasswd").read_text()
    containers = {c["name"]: c for c in statefulset["spec"]["template"]["spec"]["containers"]}
    assert set(containers) == {"chroma", "gateway"}
    assert not [e for e in containers["chroma"]["env"] if e["name"].startswith("CHROMA_SERVER_AUTH")]
    assert service["spec"]["ports"][0]["targetPort"] == "gateway"
    assert policy["kind"] == "NetworkPolicy" and policy["spec"]["ingress"] == [{"ports": [{"protocol": "TCP", "port": 8080}]}]


def test_creds_changes_take_effect_at_once_through_the_gateway(gateway_project, chroma_client_1x, docker_client):
    p = gateway_project()
    reader = add_user(p, "rita", "reader")
    ok(p("up"))
    started = docker_client.containers.get(p.container).attrs["State"]["StartedAt"]
    assert chroma_client_1x(p.url, "token", reader, ["connect"])["connect"] == "ok"
    rotated = document(ok(p("creds", "rotate", "rita", "--json")))
    assert rotated["applied"]["outcome"] == "reloaded" and rotated["applied"]["in_effect"], rotated
    assert chroma_client_1x(p.url, "token", reader, ["connect"])["connect"] == "denied"  # no `up` needed
    assert chroma_client_1x(p.url, "token", rotated["secret"], ["connect"])["connect"] == "ok"
    removed = document(ok(p("creds", "rm", "rita", "--json")))
    assert removed["applied"]["outcome"] == "reloaded" and not removed["applied"]["revocation_pending"]
    assert chroma_client_1x(p.url, "token", rotated["secret"], ["connect"])["connect"] == "denied"
    assert docker_client.containers.get(p.container).attrs["State"]["StartedAt"] == started  # Chroma kept running
    assert instances(ok(p("status", "--json")))[0]["pending"] == []


def test_status_says_why_and_up_heals_a_dead_port(gateway_project, docker_client):
    """Docker's userland proxy can die under a connection flood while both containers run:
    status says so and up restarts the gateway, which publishes the port again."""
    import subprocess

    p = gateway_project()
    ok(p("up"))
    killed = subprocess.run(["pkill", "-f", f"docker-proxy .*-host-port {p.port} "], capture_output=True)
    assert killed.returncode == 0, "no docker-proxy for the port (is the engine's userland proxy off?)"
    result = p("status", "--json")
    assert result.returncode == 4
    status = instances(result)[0]
    assert status["state"] == "running" and "does not answer" in status["problem"], status
    assert "chromactl up" in status["hint"]
    healed, doc = up(p)
    assert healed.returncode == 0 and doc["gateway"]["action"] == "restarted", healed.stderr
    assert doc["action"] == "unchanged"  # Chroma has a network of its own: it needs nothing
    assert http_status(p.url + "/api/v2/heartbeat") == 200


def test_costly_hashes_are_flagged_limited_and_rehashed_by_rotate(gateway_project):
    """A bcrypt line an earlier chromactl wrote (a chosen password at cost 12, the old default)
    costs every request naming the user that hash: status flags the user, the gateway answers
    an address that tries it too often with 429 before running bcrypt, and `creds rotate`
    re-hashes it as this version hashes every password behind the gateway ({SSHA})."""
    import base64
    import http.client

    import bcrypt

    p = gateway_project("--auth", "basic")
    ok(p("creds", "add", "lee", "--role", "reader", "--password-stdin", "--no-apply", input="lee chose this long one"))
    htpasswd = p.folder / "server.htpasswd"
    legacy = bcrypt.hashpw(b"lee chose this long one", bcrypt.gensalt(12)).decode()
    htpasswd.write_text("".join(line if not line.startswith("lee:") else f"lee:{legacy}\n"
                                for line in htpasswd.read_text().splitlines(keepends=True)))
    ok(p("up"))
    status = instances(ok(p("status", "--json")))[0]
    assert status["costly_users"] == ["lee"]
    assert "lee" in p("status").stderr and "creds rotate" in p("status").stderr

    def attempts(password, count=25):
        connection = http.client.HTTPConnection("127.0.0.1", p.port, timeout=30)
        credential = base64.b64encode(f"lee:{password}".encode()).decode()
        seen = []
        for _ in range(count):
            connection.request("GET", COLLECTIONS, headers={"Authorization": "Basic " + credential})
            response = connection.getresponse()
            response.read()
            seen.append(response.status)
        connection.close()
        return seen

    from concurrent.futures import ThreadPoolExecutor

    assert attempts("lee chose this long one", 1) == [200]  # a hash made at another cost still verifies
    with ThreadPoolExecutor(4) as pool:  # a guesser on four connections
        wrong = sum(pool.map(lambda _: attempts("wrong password guess", 10), range(4)), [])
    # A burst of 20 passes (one was spent above), then 26 a minute at cost 12.
    assert set(wrong) == {401, 429} and wrong.count(401) <= 22, wrong

    new = document(ok(p("creds", "rotate", "lee", "--json")))
    assert new["applied"]["outcome"] == "reloaded"
    assert instances(ok(p("status", "--json")))[0]["costly_users"] == []
    assert next(l for l in htpasswd.read_text().splitlines() if l.startswith("lee:")).startswith("lee:{SSHA}")
    with ThreadPoolExecutor(4) as pool:
        wrong = sum(pool.map(lambda _: attempts("wrong password guess", 10), range(4)), [])
    assert set(wrong) == {401}  # cheap now: no limit needed
    assert attempts(new["secret"], 1) == [200]


def test_a_credential_change_returns_only_once_no_old_worker_accepts_connections(gateway_project, docker_client):
    """nginx starts new workers on a reload and only then stops the old ones: a command that
    returned at the bare signal left a moment in which a revoked token still got in. Here a
    client keeps opening connections with the token through `creds rm`: every request it
    started after the command returned is refused, and no worker from before still accepts."""
    import threading

    p = gateway_project()
    reader = add_user(p, "rita", "reader")
    ok(p("up"))
    gateway = docker_client.containers.get(f"{p.container}-gateway")

    def accepting_workers() -> set[str]:
        return {row[1] for row in gateway.top()["Processes"] if row[-1] == "nginx: worker process"}

    before = accepting_workers()
    returned, stop, after = threading.Event(), threading.Event(), []

    def hammer():
        while not stop.is_set():
            started_after = returned.is_set()
            status = http_status(p.url + COLLECTIONS, {"Authorization": f"Bearer {reader}"})
            if started_after:
                after.append(status)

    thread = threading.Thread(target=hammer)
    thread.start()
    try:
        ok(p("creds", "rm", "rita"))
        returned.set()
        assert before and accepting_workers().isdisjoint(before)
        while len(after) < 50:
            assert thread.is_alive()
            stop.wait(0.01)
    finally:
        stop.set()
        thread.join()
    assert set(after) == {403}, sorted(set(after))


def test_a_new_ca_is_what_the_gateway_serves_when_tls_renew_returns(gateway_project, docker_client):
    """`tls renew --new-ca` behind the gateway: its proof uses the new CA, so it must not run
    against a worker still serving the old certificate (which failed it, and could end in the
    server being taken for open)."""
    import ssl
    import urllib.request

    p = gateway_project("--tls", "auto")
    ok(p("up"))
    ca = p.folder / ".chromactl/tls/ca.pem"
    url = f"https://127.0.0.1:{p.port}/api/v2/heartbeat"
    for _ in range(3):
        renewed = document(ok(p("tls", "renew", "--new-ca", "--json")), "tls renew")
        assert renewed["applied"]["outcome"] == "reloaded", renewed
        context = ssl.create_default_context(cafile=str(ca))
        for _ in range(20):  # a new connection each time
            with urllib.request.urlopen(url, context=context, timeout=5) as response:
                assert response.status == 200
    assert docker_client.containers.get(p.container).status == "running"
