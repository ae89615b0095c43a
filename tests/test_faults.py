"""Faults as features: for states a deployment can be in, what happens when a process, a
container or the engine dies right there. Each test ends with the deployment serving, its
data intact and the way around the gateway still closed, with no chromactl command unless
the test says one is the way back (an interrupted operation is finished by the next run).

Against the real engine and real Chroma images (1.5.9 behind the gateway, 0.6.3 natively),
reached by Chroma's real Python clients. Tests that kill the engine itself run only where
the engine is the suite's own (CHROMACTL_TEST_RESTART_ENGINE=1, set by scripts/test in CI).

Network rule: nothing here sends a packet to Chroma's internal address (the host has no
route there: it would leave by the default route). The way around the gateway is shown
closed from interface and route facts instead."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import (
    COLLECTIONS,
    assert_no_way_around,
    serves,
    IMAGE_063,
    IMAGE_159,
    start_engine,
    stop_engine,
    admin_secret,
    document,
    http_status,
    instances,
    ok,
    up,
)

pytestmark = pytest.mark.docker

GATEWAY_IMAGE = "chromactl-test/nginx:bookworm"
restarts_engine = pytest.mark.skipif(
    os.environ.get("CHROMACTL_TEST_RESTART_ENGINE") != "1",
    reason="kills the Docker engine: set CHROMACTL_TEST_RESTART_ENGINE=1 (scripts/test does in CI)")


def host_pid(docker_client, name: str) -> int:
    return docker_client.containers.get(name).attrs["State"]["Pid"]


@pytest.fixture
def gateway_project(projects):
    def new(*args):
        return projects("--gateway-image", GATEWAY_IMAGE, *args, image=IMAGE_159)

    return new


def test_sigkill_of_the_gateway_or_of_chroma_heals_by_itself(gateway_project, chroma_client_1x, docker_client):
    """What the kernel's OOM killer does: SIGKILL of nginx's master (the gateway's PID 1),
    then of Chroma. The engine restarts each container by its policy; with no namespace
    shared and no socket file left in a tmpfs /tmp, each serves again on its own."""
    p = gateway_project()
    ok(p("up"))
    token = admin_secret(p)
    assert chroma_client_1x(p.url, "token", token, ["connect", "create", "add"])["add"] == "ok"
    for name in (f"{p.container}-gateway", p.container):
        before = docker_client.containers.get(name).attrs["RestartCount"]
        os.kill(host_pid(docker_client, name), signal.SIGKILL)
        seconds = serves(p, token)
        assert docker_client.containers.get(name).attrs["RestartCount"] > before, name
        print(f"{name}: served again {seconds:.1f} s after SIGKILL")
        assert chroma_client_1x(p.url, "token", token, ["connect", "get"])["get_ids"] == ["a", "b"]
    assert_no_way_around(p, docker_client)
    status = instances(ok(p("status", "--json")))[0]
    assert status["healthy"] and status["pending"] == [], status


def test_a_slow_flood_of_strangers_does_not_make_up_take_the_deployment_down(gateway_project, docker_client):
    """300 anonymous requests that trickle their body (a byte every 3 s), from the same
    address as local clients (Docker's userland proxy): `up` still proves the server (its
    probe is not a stranger) and never stops a container; a token client is served."""
    p = gateway_project()
    ok(p("up"))
    token = admin_secret(p)
    held, stop = [], threading.Event()

    def trickle(sock):
        while not stop.is_set():
            try:
                sock.sendall(b"x")
            except OSError:
                return
            stop.wait(3)

    try:
        for index in range(300):
            sock = socket.create_connection(("127.0.0.1", p.port), timeout=5)
            target = "/api/v2/heartbeat" if index % 2 else COLLECTIONS  # public and protected routes alike
            sock.sendall(f"POST {target} HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n".encode())
            held.append(sock)
            threading.Thread(target=trickle, args=(sock,), daemon=True).start()
        started = {c: docker_client.containers.get(c).attrs["State"]["StartedAt"]
                   for c in (p.container, f"{p.container}-gateway")}
        result, doc = up(p, "--timeout", "30")
        assert result.returncode == 0, result.stdout + result.stderr
        assert doc["auth"]["enforced"] is True
        assert http_status(p.url + COLLECTIONS, {"Authorization": f"Bearer {token}"}) == 200
        assert http_status(p.url + "/api/v2/heartbeat") == 200
        assert {c: docker_client.containers.get(c).attrs["State"]["StartedAt"] for c in started} == started
    finally:
        stop.set()
        for sock in held:
            sock.close()


# --- the engine itself dies -----------------------------------------------------------------

def power_loss() -> None:
    """As a power cut would: the suite's dockerd, its containerd and every container's shim
    SIGKILLed, and /var/run/docker.pid gone as after a reboot; then the engine starts again,
    as at boot (a second engine, ci/remote-engine.sh, is left alone)."""
    stop_engine(kill=True)
    start_engine()


@restarts_engine
def test_a_power_loss_brings_every_deployment_back_by_itself(projects, gateway_project, chroma_client,
                                                             chroma_client_1x, docker_client):
    behind, native = gateway_project(), projects(image=IMAGE_063)
    for p, client in ((behind, chroma_client_1x), (native, chroma_client)):
        ok(p("up"))
        assert client(p.url, "token", admin_secret(p), ["connect", "create", "add"])["add"] == "ok"
    try:
        power_loss()
    finally:
        start_engine()  # whatever happened: later tests need it
    for p, client in ((behind, chroma_client_1x), (native, chroma_client)):
        seconds = serves(p, admin_secret(p), within=90)
        print(f"{p.name}: served again {seconds:.1f} s after the engine came back")
        assert client(p.url, "token", admin_secret(p), ["connect", "get"])["get_ids"] == ["a", "b"]
        assert instances(ok(p("status", "--json")))[0]["healthy"]
    assert_no_way_around(behind, docker_client)


# --- chromactl itself dies half-way --------------------------------------------------------------

def run_until(p, args: list[str], step: str, sig: int) -> subprocess.CompletedProcess:
    """Run chromactl until its progress on stderr shows `step`, then send it `sig`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHROMACTL_")}
    env["CHROMACTL_BCRYPT_ROUNDS"] = "10"
    # Ctrl-C as at a terminal: a suite started in the background (`cmd &` in a script) hands
    # its children SIGINT ignored, and a program that inherits that rightly keeps ignoring it.
    process = subprocess.Popen([sys.executable, "-m", "chromactl", *args], cwd=p.folder, env=env,
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    seen = []
    for line in process.stderr:
        seen.append(line)
        if step in line:
            process.send_signal(sig)
            break
    out, err = process.communicate(timeout=180)
    return subprocess.CompletedProcess(process.args, process.returncode, out, "".join(seen) + err)


@pytest.fixture
def filled(gateway_project, chroma_client_1x):
    p = gateway_project()
    ok(p("up"))
    assert chroma_client_1x(p.url, "token", admin_secret(p), ["connect", "create", "add"])["add"] == "ok"
    return p


def data_intact(p, chroma_client_1x) -> None:
    assert chroma_client_1x(p.url, "token", admin_secret(p), ["connect", "get"])["get_ids"] == ["a", "b"]


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT, signal.SIGTERM], ids=["kill", "ctrl-c", "term"])
def test_an_interrupted_backup_never_leaves_chroma_stopped(filled, chroma_client_1x, sig):
    p = filled
    done = run_until(p, ["backup", "-o", str(p.folder / "b.tar")], "stopping", sig)
    assert done.returncode == {signal.SIGKILL: -9, signal.SIGINT: 130, signal.SIGTERM: 143}[sig], done.stderr
    if sig != signal.SIGKILL:  # Ctrl-C and SIGTERM unwind: Chroma is started again before the exit
        assert done.stderr.strip().splitlines()[-1] in ("interrupted", "terminated"), done.stderr
        assert http_status(p.url + "/api/v2/heartbeat") == 200
    else:  # killed: the next run finishes it, and status says so until then
        status = p("status", "--json")
        if status.returncode:
            assert "backup was interrupted" in (instances(status)[0]["problem"] or ""), status.stdout
        recovered = ok(p("up"))
        assert "backup was interrupted" in recovered.stderr or status.returncode == 0
    serves(p, admin_secret(p))
    data_intact(p, chroma_client_1x)
    assert not (p.folder / ".chromactl/operation.json").exists()
    assert not [f for f in p.folder.iterdir() if f.name.startswith(".chromactl-backup-")]


def test_a_restore_killed_after_its_switch_is_put_back_by_the_next_run(filled, chroma_client_1x, docker_client):
    p = filled
    backup = document(ok(p("backup", "--json")), "backup")["path"]
    done = run_until(p, ["restore", backup, "--yes"], "switching", signal.SIGKILL)
    assert done.returncode == -9
    recovered = ok(p("up"))
    assert "restore was interrupted" in recovered.stderr and "kept in volume" in recovered.stderr, recovered.stderr
    assert instances(ok(p("status", "--json")))[0]["volume"] == p.volume  # the previous volume, proven
    data_intact(p, chroma_client_1x)


def test_an_upgrade_killed_after_its_switch_is_put_back_by_the_next_run(projects, chroma_client, docker_client):
    p = projects("--gateway-image", GATEWAY_IMAGE, image=IMAGE_063)
    ok(p("init", "--force", "--gateway", "none"))
    ok(p("up"))
    assert chroma_client(p.url, "token", admin_secret(p), ["connect", "create", "add"])["add"] == "ok"
    done = run_until(p, ["upgrade", "--image", IMAGE_159, "--yes"], "switching", signal.SIGKILL)
    assert done.returncode == -9
    recovered = ok(p("up"))
    assert "upgrade was interrupted" in recovered.stderr, recovered.stderr
    status = instances(ok(p("status", "--json")))[0]
    assert status["image"] == IMAGE_063 and status["volume"] == p.volume and status["healthy"], status
    assert chroma_client(p.url, "token", admin_secret(p), ["connect", "get"])["get_ids"] == ["a", "b"]


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["kill", "ctrl-c"])
def test_an_up_interrupted_while_creating_is_finished_by_the_next(gateway_project, sig, docker_client):
    p = gateway_project()
    done = run_until(p, ["up"], "creating", sig)
    assert done.returncode in (-9, 130), done.stderr
    if sig == signal.SIGINT:
        assert done.stderr.strip().splitlines()[-1] == "interrupted"
    ok(p("up"))
    serves(p, admin_secret(p))
    assert_no_way_around(p, docker_client)
