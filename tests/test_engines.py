"""The same lifecycle on every engine chromactl supports: the local Docker engine, Podman
through its Docker-compatible service, and a remote Docker engine over SSH that cannot see
the project's folder (ci/podman.sh and ci/remote-engine.sh start them; scripts/test runs
both). On each: init, up, Chroma's real client, creds add, rotate and rm with immediate
effect, status, tls renew, backup, restore, upgrade 0.6.3 -> 1.5.9, down; and the way
around the gateway shown closed from the engine's own facts and the host's interfaces."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from conftest import IMAGE_063, IMAGE_159, admin_secret, document, free_port, instances, ok, require, run_chromactl

pytestmark = pytest.mark.docker

GATEWAY_IMAGE = "chromactl-test/nginx:bookworm"
ENGINES = {
    "docker": "unix:///var/run/docker.sock",
    "podman": "unix:///run/chromactl-podman/podman.sock",
    "remote": "ssh://root@127.0.0.1:2222",
}


@pytest.fixture(params=list(ENGINES))
def engine(request, docker_client):
    """(name, DOCKER_HOST, a Docker SDK client for that engine)."""
    import docker

    address = ENGINES[request.param]
    try:
        client = docker.DockerClient(base_url=address, use_ssh_client=address.startswith("ssh://"), timeout=60)
        client.ping()
    except Exception as exc:  # noqa: BLE001 - any failure means: that engine is not set up here
        require(False, f"the {request.param} engine at {address} ({type(exc).__name__}): scripts/test starts it")
    yield request.param, address, client
    client.close()


@pytest.fixture
def on(engine, tmp_path):
    """new(*init_args, image=...) inits a project whose chromactl runs talk to `engine`;
    whatever it made there is removed after the test."""
    name, address, client = engine
    made = []

    def new(*init_args, image=IMAGE_159):
        project = "e" + os.urandom(4).hex()
        folder = tmp_path / project
        folder.mkdir()
        port = free_port()

        def run(*args, **kwargs):
            kwargs.setdefault("cwd", folder)
            kwargs["env"] = {"DOCKER_HOST": address, "CHROMACTL_BCRYPT_ROUNDS": "10", **kwargs.get("env", {})}
            return run_chromactl(*args, **kwargs)

        run.folder, run.name, run.port, run.container = folder, project, port, f"chromactl-{project}"
        ok(run("init", "--name", project, "--image", image, "--gateway-image", GATEWAY_IMAGE, "--host", "127.0.0.1",
               "--port", str(port), *init_args))
        made.append(run)
        return run

    new.engine, new.client = name, client
    yield new
    for run in made:
        label = {"label": f"org.chromactl.project={run.folder}"}
        for container in client.containers.list(all=True, filters=label):
            container.remove(force=True)
        for network in client.networks.list(filters=label):
            network.remove()
        for volume in client.volumes.list(filters=label):
            volume.remove(force=True)


def bridge_of(client, network) -> str:
    """The host's interface of a bridge network: Docker's br-<id>, Podman's cni-podmanN."""
    attrs = client.api.inspect_network(network)
    if attrs.get("Options", {}).get("com.docker.network.bridge.name"):
        return attrs["Options"]["com.docker.network.bridge.name"]
    listed = subprocess.run(["podman", "network", "inspect", network, "--format", "{{.NetworkInterface}}"],
                            capture_output=True, text=True)
    return listed.stdout.strip() if listed.returncode == 0 and listed.stdout.strip() else "br-" + attrs["Id"][:12]


def test_the_lifecycle_on_every_engine(on, chroma_client_1x, tmp_path):
    p = on("--tls", "auto")
    ca = str(p.folder / ".chromactl/tls/ca.pem")
    url = f"https://127.0.0.1:{p.port}"
    doc = document(ok(p("up", "--json")), "up")
    assert doc["auth"]["enforced"] is True and doc["url"] == url and doc["gateway"]["action"] == "created"
    admin = admin_secret(p)
    assert chroma_client_1x(url, "token", admin, ["connect", "create", "add"], ca=ca)["add"] == "ok"

    # The files reach the engine through its API, not a bind mount of the folder it may not see.
    mounts = [m for c in (p.container, f"{p.container}-gateway") for m in on.client.api.inspect_container(c)["Mounts"]]
    assert all(m["Type"] == "volume" for m in mounts), mounts

    # Nothing around the gateway: Chroma on the internal network alone; no host address there.
    chroma = on.client.api.inspect_container(p.container)
    assert list(chroma["NetworkSettings"]["Networks"]) == [f"{p.container}-internal"]
    network = on.client.api.inspect_network(f"{p.container}-internal")
    assert network["Internal"] is True
    bridge = bridge_of(on.client, f"{p.container}-internal")
    shown = subprocess.run(["ip", "-4", "-o", "addr", "show", "dev", bridge], capture_output=True, text=True)
    assert shown.stdout.strip() == "", (bridge, shown.stdout)  # absent or address-less: no route in

    rita = document(ok(p("creds", "add", "rita", "--role", "reader", "--json")), "creds add")
    assert rita["applied"]["outcome"] == "reloaded", rita
    read = chroma_client_1x(url, "token", rita["secret"], ["connect", "get", "add"], ca=ca)
    assert read["get"] == "ok" and read["add"] == "denied", read
    rotated = document(ok(p("creds", "rotate", "rita", "--json")), "creds rotate")
    assert chroma_client_1x(url, "token", rita["secret"], ["connect"], ca=ca)["connect"] == "denied"
    assert chroma_client_1x(url, "token", rotated["secret"], ["connect", "get"], ca=ca)["get"] == "ok"
    ok(p("creds", "rm", "rita"))
    assert chroma_client_1x(url, "token", rotated["secret"], ["connect"], ca=ca)["connect"] == "denied"

    status = instances(ok(p("status", "--json")))[0]
    assert status["healthy"] and status["pending"] == [] and status["auth"]["enforced"] is True, status
    renewed = document(ok(p("tls", "renew", "--json")), "tls renew")
    assert renewed["applied"]["outcome"] == "reloaded"

    backup = document(ok(p("backup", "-o", str(tmp_path / "b.tar"), "--json")), "backup")
    assert backup["manifest"]["records"] == 2
    restored = document(ok(p("restore", str(tmp_path / "b.tar"), "--yes", "--json")), "restore")
    assert restored["records"] == 2
    assert chroma_client_1x(url, "token", admin, ["connect", "get"], ca=ca)["get_ids"] == ["a", "b"]

    down = document(ok(p("down", "--json")), "down")
    assert down["removed"] and not down["volume_removed"]
    assert not on.client.volumes.list(filters={"name": f"{p.container}-config"})  # its secrets go with it


def test_an_upgrade_on_every_engine(on, chroma_client, chroma_client_1x):
    p = on("--gateway", "none", image=IMAGE_063)
    ok(p("up"))
    url = f"http://127.0.0.1:{p.port}"
    admin = admin_secret(p)
    assert chroma_client(url, "token", admin, ["connect", "create", "add"])["add"] == "ok"
    upgraded = document(ok(p("upgrade", "--image", IMAGE_159, "--yes", "--json")), "upgrade")
    assert upgraded["records"] == 2 and upgraded["gateway"] is not None, upgraded
    assert chroma_client_1x(url, "token", admin, ["connect", "get"])["get_ids"] == ["a", "b"]
