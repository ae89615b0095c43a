"""export compose / kubernetes: checked by a real Compose (Debian's docker-compose)
against the test engine with Chroma's real client, and by kubernetes-validate."""

import base64
import json
import os
import shutil
import subprocess
import time

import pytest
import yaml

from conftest import IMAGE_063, IMAGE_159, COLLECTIONS, admin_secret, free_port, http_status, ok, require, run_chromactl, snapshot


def init(chromactl, *args, image=IMAGE_063):
    port = free_port()
    ok(chromactl("init", "--image", image, "--host", "127.0.0.1", "--port", str(port), *args,
                 env={"CHROMACTL_BCRYPT_ROUNDS": "10"}))
    return port


@pytest.mark.docker
def test_compose_file_runs_under_real_compose_and_enforces_auth(chromactl, docker_client, chroma_client):
    compose = shutil.which("docker-compose")
    require(compose is not None, "Debian's docker-compose")
    port = init(chromactl)
    project = chromactl.project
    name = project.name
    ok(chromactl("export", "compose", "-o", "compose.yaml"))
    assert "$" not in (project / "compose.yaml").read_text().replace("$$", "")
    base = [compose, "-f", str(project / "compose.yaml"), "-p", "chromactltest" + str(port)]
    config = subprocess.run(base + ["config"], capture_output=True, text=True)
    assert config.returncode == 0, config.stderr
    try:
        up = subprocess.run(base + ["up", "-d"], capture_output=True, text=True, timeout=300)
        assert up.returncode == 0, up.stderr
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if http_status(url + "/api/v2/heartbeat") == 200:
                    break
            except OSError:
                pass
            time.sleep(0.3)
        token = admin_secret(type("P", (), {"folder": project}))
        assert http_status(url + COLLECTIONS) == 403
        done = chroma_client(url, "token", token, ["connect", "create", "add", "count"])
        assert done["count"] == "ok", done
        assert chroma_client(url, "token", "Q" * 40, ["connect"])["connect"] == "denied"

        # The health check works inside the image (it needs neither curl nor Python).
        [container] = docker_client.containers.list(filters={"label": f"org.chromactl.project={project}"})
        deadline = time.monotonic() + 90
        health = None
        while time.monotonic() < deadline:
            container.reload()
            health = container.attrs["State"].get("Health", {}).get("Status")
            if health == "healthy":
                break
            time.sleep(1)
        assert health == "healthy", container.attrs["State"].get("Health")
        mounts = {m["Destination"]: m for m in container.attrs["Mounts"]}
        assert mounts["/etc/chromactl/authz.yaml"]["RW"] is False
        assert mounts["/chroma/chroma"]["Name"] == f"chromactl-{name}-data"

        # `docker-compose down -v` removes the project's volumes, but not the data volume: it is
        # external, so the data is there when the deployment comes up again.
        down = subprocess.run(base + ["down", "-v"], capture_output=True, text=True, timeout=120)
        assert down.returncode == 0 and f"Removing volume chromactl-{name}-data" not in down.stdout + down.stderr, down.stderr
        assert docker_client.volumes.get(f"chromactl-{name}-data")
        assert subprocess.run(base + ["up", "-d"], capture_output=True, text=True, timeout=300).returncode == 0
        deadline = time.monotonic() + 90
        while True:
            again = chroma_client(url, "token", token, ["connect", "get"])
            if again.get("get_ids") == ["a", "b"] or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert again.get("get_ids") == ["a", "b"], again
    finally:
        subprocess.run(base + ["down", "-v"], capture_output=True, text=True, timeout=120)
        for volume in docker_client.volumes.list(filters={"name": f"chromactl-{name}-data"}):
            volume.remove(force=True)


@pytest.mark.docker
def test_compose_escapes_dollars_in_its_own_text(tmp_path):
    compose = shutil.which("docker-compose")
    require(compose is not None, "Debian's docker-compose")
    folder = tmp_path / "price$HOME"
    folder.mkdir()
    ok(run_chromactl("init", "--image", IMAGE_063, "--name", "dollar", cwd=folder))
    text = ok(run_chromactl("export", "compose", cwd=folder)).stdout
    config = subprocess.run([compose, "-f", "-", "config"], input=text, capture_output=True, text=True, cwd=folder)
    assert config.returncode == 0, config.stderr
    rendered = yaml.safe_load(config.stdout)
    # Compose prints its resolved file in its own syntax, where `$$` stands for a literal `$`:
    # the path was not interpolated (an unescaped `$HOME` would have become the home folder).
    assert rendered["services"]["chroma"]["labels"]["org.chromactl.project"] == str(folder).replace("$", "$$")


def _kubernetes_docs(chromactl, *args):
    text = ok(chromactl("export", "kubernetes", *args)).stdout
    return text, list(yaml.safe_load_all(text))


def test_kubernetes_manifests_validate_and_carry_the_files_byte_for_byte(chromactl, tmp_path):
    import sys
    from pathlib import Path
    beside = Path(sys.executable).parent / "kubernetes-validate"
    validator = str(beside) if beside.exists() else shutil.which("kubernetes-validate")
    require(validator is not None, "kubernetes-validate (pip install kubernetes-validate)")
    init(chromactl, "--auth", "basic")
    ok(chromactl("creds", "add", "alice", "--role", "writer", env={"CHROMACTL_BCRYPT_ROUNDS": "10"}))
    ok(chromactl("export", "kubernetes", "--namespace", "search", "-o", str(tmp_path / "k8s.yaml")))
    check = subprocess.run([validator, "--strict", str(tmp_path / "k8s.yaml")], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout.count("passed") == 3, check.stdout
    assert (tmp_path / "k8s.yaml").stat().st_mode & 0o777 == 0o600

    secret, statefulset, service = yaml.safe_load_all((tmp_path / "k8s.yaml").read_text())
    assert [d["kind"] for d in (secret, statefulset, service)] == ["Secret", "StatefulSet", "Service"]
    assert all(d["metadata"]["namespace"] == "search" for d in (secret, statefulset, service))
    project = chromactl.project
    for name in ("server.htpasswd", "authz.yaml"):
        assert base64.b64decode(secret["data"][name]) == (project / name).read_bytes()
    from chromactl.envfile import parse_env_file
    env = parse_env_file((project / ".chroma_env").read_text())
    assert {k[4:]: base64.b64decode(v).decode() for k, v in secret["data"].items() if k.startswith("env.")} == env

    spec = statefulset["spec"]
    assert spec["replicas"] == 1
    assert spec["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    container = spec["template"]["spec"]["containers"][0]
    assert {"name": "data", "mountPath": "/chroma/chroma"} in container["volumeMounts"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/api/v2/heartbeat"
    assert container["livenessProbe"]["httpGet"]["path"] == "/api/v2/heartbeat"
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    pod_text = json.dumps(statefulset) + json.dumps(service)
    for line in (project / "server.htpasswd").read_text().splitlines():
        assert line.split(":")[1] not in pod_text  # secrets only in the Secret
    assert service["spec"]["ports"][0]["port"] == 8000


def test_reexport_after_creds_add_changes_only_the_secret(chromactl):
    init(chromactl)
    _, before = _kubernetes_docs(chromactl)
    ok(chromactl("creds", "add", "bob"))
    _, after = _kubernetes_docs(chromactl)
    assert before[0] != after[0]
    assert before[1:] == after[1:]
    token = admin_secret(type("P", (), {"folder": chromactl.project}))
    assert token not in json.dumps(after[1:])


def test_bad_input_writes_nothing(chromactl, tmp_path):
    result = chromactl("export", "compose")
    assert result.returncode == 1 and "no chromactl project" in result.stderr
    result = chromactl("export", "helm")
    assert result.returncode == 2
    init(chromactl, "--gateway", "none", image=IMAGE_159)
    before = snapshot(chromactl.project)
    for target in ("compose", "kubernetes"):
        result = chromactl("export", target, "-o", "out.yaml")
        assert result.returncode == 1 and "ignores every auth setting" in result.stderr, result.stderr
        result = chromactl("export", target, "-o", str(tmp_path / "missing" / "out.yaml"))
        assert result.returncode == 1
    assert snapshot(chromactl.project) == before


def test_unwritable_output(chromactl):
    import os
    import tempfile
    from pathlib import Path
    init(chromactl)
    if os.geteuid() == 0:
        folder = Path(tempfile.mkdtemp(prefix="chromactl-ro-"))
        try:
            folder.chmod(0o755)
            chromactl.project.chmod(0o755)
            chromactl.project.parent.chmod(0o755)
            for path in (chromactl.project / "authz.yaml", chromactl.project / ".chroma_env",
                         chromactl.project / ".chromactl", chromactl.project / ".chromactl/probe-secret"):
                os.chown(path, 65534, 65534)
            result = run_chromactl("-C", str(chromactl.project), "export", "compose", "-o", str(folder / "c.yaml"),
                                   user="65534")
            assert list(folder.iterdir()) == []
        finally:
            shutil.rmtree(folder)
    else:
        folder = chromactl.project / "ro"
        folder.mkdir(mode=0o555)
        result = chromactl("export", "compose", "-o", str(folder / "c.yaml"))
    assert result.returncode == 1 and "permission denied" in result.stderr, result.stderr


_RAW_STATUS = r'''
import json, socket, sys
def status(host, port):
    body = b'{"name": "intruder"}'
    try:
        s = socket.create_connection((host, int(port)), timeout=5)
    except ConnectionRefusedError:
        return "refused"
    s.sendall(b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
              b"Connection: close\r\n\r\n" % (sys.argv[1].encode(), len(body)) + body)
    data = b""
    while chunk := s.recv(4096):
        data += chunk
    return int(data.split()[1])
print(json.dumps([status(*target.split(":")) for target in sys.argv[2:]]))
'''

_BASH_STATUS = r'''
for target in "$@"; do
  ( exec 3<>"/dev/tcp/${target%:*}/${target#*:}" || exit 9
    printf 'POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 20\r\nConnection: close\r\n\r\n{"name": "intruder"}' "$COLLECTIONS" >&3
    head -n 1 <&3 | cut -d' ' -f2 ) 2>/dev/null || echo refused
done
'''


@pytest.mark.docker
def test_exported_compose_has_no_way_around_its_gateway(chromactl, docker_client):
    """The exported Compose deployment attacked as `up`'s is: as an unprivileged user of this
    machine and from another container, a write without credentials to every address that
    reaches its containers (the published port, the gateway's own address, Chroma's port
    there). Chroma's internal address is proven out of reach from interface and route facts
    (no packet is sent there: with no route it would leave through the default route)."""
    import ipaddress
    import sys

    compose = shutil.which("docker-compose")
    require(compose is not None, "Debian's docker-compose")
    name = "atk" + os.urandom(4).hex()  # its own data volume, empty
    port = init(chromactl, "--name", name, "--gateway-image", "chromactl-test/nginx:bookworm", image=IMAGE_159)
    project = chromactl.project
    ok(chromactl("export", "compose", "-o", "compose.yaml"))
    base = [compose, "-f", str(project / "compose.yaml"), "-p", "chromactlatk" + str(port)]
    admin = {"Authorization": "Bearer " + admin_secret(type("P", (), {"folder": project}))}
    try:
        started = subprocess.run(base + ["up", "-d"], capture_output=True, text=True, timeout=300)
        assert started.returncode == 0, started.stderr
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if http_status(url + "/api/v2/heartbeat") == 200:
                    break
            except OSError:
                pass
            time.sleep(0.3)
        assert http_status(url + COLLECTIONS, admin) == 200
        containers = {c.labels["org.chromactl.service"]: c
                      for c in docker_client.containers.list(filters={"label": f"org.chromactl.project={project}"})}
        chroma, gateway = containers["chroma"], containers["gateway"]

        # Chroma: on the internal network alone, nothing published; that network has no host address.
        [internal] = chroma.attrs["NetworkSettings"]["Networks"]
        assert not chroma.attrs["HostConfig"]["PortBindings"]
        network = docker_client.networks.get(internal)
        assert network.attrs["Internal"] is True
        bridge = network.attrs["Options"].get("com.docker.network.bridge.name") or "br-" + network.id[:12]
        shown = subprocess.run(["ip", "-4", "-o", "addr", "show", "dev", bridge], capture_output=True, text=True)
        assert shown.stdout.strip() == "", shown.stdout
        chroma_ip = chroma.attrs["NetworkSettings"]["Networks"][internal]["IPAddress"]
        routes = subprocess.run(["ip", "-4", "-o", "route", "show"], capture_output=True, text=True).stdout
        for line in routes.splitlines():  # no route of this host leads onto that bridge
            prefix = line.split()[0]
            if prefix != "default" and ipaddress.ip_address(chroma_ip) in ipaddress.ip_network(prefix, strict=False):
                assert f"dev {bridge}" not in line, line

        [(public, attached)] = [(n, a) for n, a in gateway.attrs["NetworkSettings"]["Networks"].items() if n != internal]
        targets = [f"127.0.0.1:{port}", f"{attached['IPAddress']}:8080", f"{attached['IPAddress']}:8000"]
        expected = [403, 403, "refused"]  # nothing listens on Chroma's port beside the gateway

        # An unprivileged user of this machine.
        nobody = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c",
                                 _RAW_STATUS, COLLECTIONS, *targets], capture_output=True, text=True, timeout=60)
        assert nobody.returncode == 0, nobody.stderr
        assert json.loads(nobody.stdout) == expected

        # Another container, on the deployment's public network (inside the engine: the published
        # port is the host's, so the container aims at the gateway's own address).
        output = docker_client.containers.run(
            "chromactl-test/nginx:bookworm", ["bash", "-c", _BASH_STATUS, "attack", *targets[1:]],
            environment={"COLLECTIONS": COLLECTIONS}, network=public, remove=True, user="65534:65534")
        assert output.decode().split() == [str(s) for s in expected[1:]]

        listed = urllib_get_json(url + COLLECTIONS, admin)
        assert listed == [], listed  # no attempt created anything
    finally:
        subprocess.run(base + ["down", "-v"], capture_output=True, text=True, timeout=120)
        for volume in docker_client.volumes.list(filters={"name": f"chromactl-{name}-data"}):
            volume.remove(force=True)


def urllib_get_json(url: str, headers: dict):
    import urllib.request

    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as response:
        return json.loads(response.read())


@pytest.mark.parametrize("image, listen", [
    (IMAGE_159, {"args": ["run", "--host", "127.0.0.1", "--port", "8000", "--path", "/data"]}),
    (IMAGE_063, {"env": {"name": "CHROMA_HOST_ADDR", "value": "127.0.0.1"}}),
], ids=["1.x", "0.x"])
def test_exported_kubernetes_chroma_listens_on_the_pods_loopback_behind_the_gateway(tmp_path, image, listen):
    """In the pod, only the gateway sidecar listens beyond loopback: Chroma is told to listen on
    127.0.0.1 (1.x by its command line, 0.x by CHROMA_HOST_ADDR) and declares no port, so
    nothing in the cluster reaches it but through the gateway. No engine is needed."""
    env = {"DOCKER_HOST": "unix:///nonexistent/chromactl-test.sock"}
    ok(run_chromactl("init", "--name", "k8s", "--image", image, "--gateway", "nginx", cwd=tmp_path, env=env))
    ok(run_chromactl("export", "kubernetes", "-o", "k8s.yaml", cwd=tmp_path, env=env))
    documents = list(yaml.safe_load_all((tmp_path / "k8s.yaml").read_text()))
    [statefulset] = [d for d in documents if d["kind"] == "StatefulSet"]
    containers = {c["name"]: c for c in statefulset["spec"]["template"]["spec"]["containers"]}
    chroma = containers["chroma"]
    assert "ports" not in chroma and containers["gateway"]["ports"], containers
    if "args" in listen:
        assert chroma["args"] == listen["args"]
    else:
        assert "args" not in chroma and listen["env"] in chroma["env"], chroma
