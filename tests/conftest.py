"""Shared fixtures. Tests run chromactl as a real process, read the files it writes,
and check them against real peers: Apache's htpasswd, and Chroma 0.6.3's own server
and client from a separate virtualenv (CHROMACTL_TEST_CHROMA_PYTHON).

Under CI (CI=true) a missing peer is a failure, not a skip: `scripts/test` installs them.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
HELPERS = Path(__file__).resolve().parent / "helpers"


def require(condition: bool, reason: str) -> None:
    """Skip on a developer's machine without the peer; fail in CI, where it must exist."""
    if condition:
        return
    if os.environ.get("CI"):
        pytest.fail(f"CI must provide this: {reason}")
    pytest.skip(reason)


def run_chromactl(*args: str, cwd: Path | None = None, input: str | None = None,
                  env: dict | None = None, user: str | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "chromactl", *args]
    if user:  # run as another (unprivileged) user: root ignores file permissions
        command = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *command]  # numeric ids
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("CHROMACTL_")}
    full_env.update(env or {})
    return subprocess.run(command, cwd=cwd, input=input, capture_output=True, text=True, env=full_env,
                          stdin=None if input is not None else subprocess.DEVNULL, timeout=120)


@pytest.fixture
def chromactl(tmp_path):
    """chromactl('init', ...) runs in a fresh project folder, tmp_path / 'proj'."""
    project = tmp_path / "proj"
    project.mkdir()

    def run(*args: str, **kwargs) -> subprocess.CompletedProcess:
        kwargs.setdefault("cwd", project)
        return run_chromactl(*args, **kwargs)

    run.project = project
    return run


def ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, f"exit {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    return result


SCHEMA = json.loads((REPO / "chromactl" / "output.schema.json").read_text())


def document(result: subprocess.CompletedProcess | str, command: str | None = None) -> dict:
    """The one JSON document a --json run printed, checked against chromactl's published
    schema (chromactl/output.schema.json), and against the command it should name."""
    import jsonschema

    text = result if isinstance(result, str) else result.stdout
    doc = json.loads(text)
    jsonschema.validate(doc, SCHEMA, format_checker=jsonschema.FormatChecker())
    if command is not None:
        assert doc["command"] == command, doc
    return doc


def instances(result: subprocess.CompletedProcess) -> list[dict]:
    """The instances of a `status --json` run."""
    return document(result, "status")["instances"]


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file below the folder with its content and mode, to prove nothing changed."""
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mode)
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != "lock"}


# --- Chroma 0.6.3, run for real ------------------------------------------------------


@pytest.fixture(scope="session")
def chroma_python() -> str:
    python = os.environ.get("CHROMACTL_TEST_CHROMA_PYTHON", "")
    require(bool(python) and Path(python).exists(),
            "CHROMACTL_TEST_CHROMA_PYTHON must name a python with chromadb==0.6.3 (scripts/test sets it up)")
    return python


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_status(url: str, headers: dict | None = None) -> int:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


COLLECTIONS = "/api/v2/tenants/default_tenant/databases/default_database/collections"


@pytest.fixture
def chroma_server(chroma_python, tmp_path):
    """start(project) runs Chroma 0.6.3's real server on loopback with the project's
    .chroma_env, the credential files at the paths it names (/etc/chromactl/... is
    where the container mounts them; here they are read from the project folder)."""
    from chromactl.envfile import MOUNT_DIR, parse_env_file

    processes = []

    def start(project: Path) -> str:
        env_file = parse_env_file((project / ".chroma_env").read_text())
        env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}
        env.update({k: v.replace(MOUNT_DIR, str(project)) for k, v in env_file.items()})
        port = free_port()
        workdir = tmp_path / f"server-{port}"
        workdir.mkdir()
        log = open(workdir / "server.log", "w")
        process = subprocess.Popen(
            [chroma_python, "-m", "uvicorn", "chromadb.app:app", "--host", "127.0.0.1", "--port", str(port)],
            cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT)
        processes.append((process, log))
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise AssertionError("Chroma server exited:\n" + (workdir / "server.log").read_text()[-3000:])
            try:
                if http_status(url + "/api/v2/heartbeat") == 200:
                    return url
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError("Chroma server did not answer its heartbeat within 90 s")

    def stop_all() -> None:
        for process, log in processes:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
            log.close()
        processes.clear()

    start.stop_all = stop_all
    yield start
    stop_all()


def _client_runner(python: str):
    def run(url: str, auth: str, credentials: str | None, ops: list[str], header: str = "Authorization",
            collection: str = "docs", ca: str | None = None) -> dict:
        request = {"url": url, "auth": auth, "credentials": credentials, "header": header,
                   "collection": collection, "ops": ops, "ca": ca}
        result = subprocess.run([python, str(HELPERS / "chroma_client.py")], input=json.dumps(request),
                                capture_output=True, text=True, timeout=300, env={"PATH": os.environ["PATH"]})
        assert result.returncode == 0, result.stderr[-3000:]
        return json.loads(result.stdout)

    return run


@pytest.fixture
def chroma_client(chroma_python):
    """client(url, auth, credentials, ops, header=...) drives Chroma 0.6.3's real Python client."""
    return _client_runner(chroma_python)


@pytest.fixture
def chroma_client_1x():
    """The same with Chroma 1.5.9's real Python client (CHROMACTL_TEST_CHROMA_1X_PYTHON)."""
    python = os.environ.get("CHROMACTL_TEST_CHROMA_1X_PYTHON", "")
    require(bool(python) and Path(python).exists(),
            "CHROMACTL_TEST_CHROMA_1X_PYTHON must name a python with chromadb==1.5.9 (scripts/test sets it up)")
    return _client_runner(python)


@pytest.fixture
def js_client():
    """js_client(url, token, ops, ca=...) drives Chroma's real JavaScript client (npm chromadb
    3.x) under node, trusting `ca` through NODE_EXTRA_CA_CERTS as operators are told to."""
    folder = os.environ.get("CHROMACTL_TEST_JS_CLIENT_DIR", "")
    require(bool(folder) and (Path(folder) / "node_modules/chromadb").is_dir() and shutil.which("node") is not None,
            "CHROMACTL_TEST_JS_CLIENT_DIR must hold node_modules/chromadb, and node must be on PATH "
            "(scripts/test sets both up)")
    script = Path(folder) / "chroma_client.mjs"  # beside node_modules, where node resolves the import
    script.write_text((HELPERS / "chroma_client.mjs").read_text())

    def run(url: str, token: str | None, ops: list[str], ca: str | None = None) -> dict:
        env = {"PATH": os.environ["PATH"], **({"NODE_EXTRA_CA_CERTS": ca} if ca else {})}
        result = subprocess.run(["node", str(script)], input=json.dumps({"url": url, "token": token, "ops": ops}),
                                capture_output=True, text=True, timeout=120, env=env)
        assert result.returncode == 0, result.stderr[-3000:]
        return json.loads(result.stdout)

    return run


# --- a real Docker engine and the locally built images -----------------------------------------

IMAGE_063 = "chromactl-test/chroma:0.6.3"
IMAGE_159 = "chromactl-test/chroma:1.5.9"
IMAGE_UNTAGGED = "chromactl-test/chroma-untagged:probe"
REGISTRY_IMAGE = "127.0.0.1:5000/chroma:0.6.3"
ROUNDS = {"CHROMACTL_BCRYPT_ROUNDS": "10"}

@pytest.fixture(scope="session")
def docker_client():
    docker = pytest.importorskip("docker")
    try:
        client = docker.from_env()
        client.ping()
    except Exception:
        require(False, "a running Docker engine (ci/docker-engine.sh starts one)")
    for image in (IMAGE_063, IMAGE_159, IMAGE_UNTAGGED):
        try:
            client.images.get(image)
        except docker.errors.ImageNotFound:
            require(False, f"the locally built image {image} (ci/chroma-images.sh builds it)")
    return client


@pytest.fixture
def projects(tmp_path, docker_client):
    """new(*init_args) makes a project with a unique name on a free loopback port, using
    the local 0.6.3 image unless told otherwise. Everything it started is removed after
    the test, pass or fail: containers and networks by project label, and data volumes."""
    made = []

    def new(*init_args, image=IMAGE_063, env=None, init=True):
        name = "t" + secrets.token_hex(4)
        folder = tmp_path / name
        folder.mkdir()
        port = free_port()

        def run(*args, **kwargs):
            kwargs.setdefault("cwd", folder)
            kwargs["env"] = {**ROUNDS, **(env or {}), **kwargs.get("env", {})}
            return run_chromactl(*args, **kwargs)

        run.folder, run.name, run.port = folder, name, port
        run.container, run.volume = f"chromactl-{name}", f"chromactl-{name}-data"
        run.url = f"http://127.0.0.1:{port}"
        if init:
            ok(run("init", "--name", name, "--image", image, "--host", "127.0.0.1", "--port", str(port), "--json",
                   *init_args))
        made.append(run)
        return run

    yield new
    for run in made:
        label = {"label": f"org.chromactl.project={run.folder}"}
        for container in docker_client.containers.list(all=True, filters=label):
            container.remove(force=True)
        for network in docker_client.networks.list(filters=label):
            network.remove()
        for volume in docker_client.volumes.list(filters={"name": f"chromactl-{run.name}-"}):
            if volume.name in (run.volume, f"chromactl-{run.name}-config"):
                volume.remove(force=True)


def admin_secret(project):
    users = yaml.safe_load((project.folder / "authz.yaml").read_text())["users"]
    return next(u for u in users if u["id"] == "admin")["tokens"][0]


def add_user(project, name, role, stdin=None, flag=None):
    args = ["creds", "add", name, "--role", role, "--json"] + ([flag] if flag else [])
    return document(ok(project(*args, input=stdin)))["secret"]


def up(project, *args, **kwargs):
    result = project("up", "--json", *args, **kwargs)
    return result, (document(result, "up") if result.returncode == 0 else None)


def htpasswd_binary() -> str:
    path = shutil.which("htpasswd")
    require(path is not None, "Apache's htpasswd (Debian package apache2-utils) is needed")
    return path


# --- a deployment serving again, and still no way around its gateway ---------------------------


def serves(p, token: str, within: float = 60) -> float:
    """Seconds until the heartbeat answers and the admin's token lists collections (no
    chromactl command runs meanwhile); fails after `within`."""
    started = time.monotonic()
    while True:
        try:
            if http_status(p.url + "/api/v2/heartbeat") == 200 and \
                    http_status(p.url + COLLECTIONS, {"Authorization": f"Bearer {token}"}) == 200:
                return time.monotonic() - started
        except OSError:
            pass
        assert time.monotonic() - started < within, f"{p.name} did not serve again within {within} s"
        time.sleep(0.5)


def assert_no_way_around(p, docker_client) -> None:
    """Chroma behind the gateway: on the internal network only, which has no address on the
    host (so no route in), is internal, and holds Chroma and the gateway alone."""
    network = docker_client.networks.get(f"{p.container}-internal")
    bridge = "br-" + network.id[:12]
    addresses = subprocess.run(["ip", "-4", "-o", "addr", "show", "dev", bridge], capture_output=True, text=True)
    assert addresses.returncode == 0 and addresses.stdout.strip() == ""
    assert network.attrs["Internal"] is True
    assert {c["Name"] for c in network.attrs["Containers"].values()} == {p.container, f"{p.container}-gateway"}
    chroma = docker_client.containers.get(p.container)
    assert list(chroma.attrs["NetworkSettings"]["Networks"]) == [f"{p.container}-internal"]
    assert not chroma.attrs["HostConfig"]["PortBindings"]


# --- the suite's own engine, stopped and killed (CI) ----------------------------------------------

ENGINE_PID_FILE = Path("/var/run/docker.pid")
# The suite's engine's containerd and shims name its state folder on their command lines; a
# second engine (ci/remote-engine.sh) has another, and is left alone.
ENGINE_CONTAINERD = "/var/run/docker/containerd"


def engine_pid() -> int | None:
    try:
        pid = int(ENGINE_PID_FILE.read_text().strip())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def stop_engine(kill: bool = False) -> None:
    """Stop the suite's dockerd (SIGTERM: as `systemctl stop docker`), or with `kill` (as a
    power cut) SIGKILL it, its containerd and every container's shim, and remove its pid
    file as a reboot clears /run. Waits until it is gone."""
    import signal

    pid = engine_pid()
    if kill:
        subprocess.run(["pkill", "-9", "-f", ENGINE_CONTAINERD], capture_output=True)  # containerd and the shims
    if pid is not None:
        os.kill(pid, signal.SIGKILL if kill else signal.SIGTERM)
        deadline = time.monotonic() + 60
        while Path(f"/proc/{pid}").exists():
            assert time.monotonic() < deadline, "dockerd did not stop"
            time.sleep(0.2)
    if kill:
        ENGINE_PID_FILE.unlink(missing_ok=True)


def start_engine() -> None:
    subprocess.run(["bash", str(REPO / "ci/docker-engine.sh")], check=True, capture_output=True)
