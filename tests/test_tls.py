"""TLS with the real engine and Chroma's real clients: chromactl's own CA (auto) and an
operator's files, served by the gateway for 1.5.9 and by Chroma 0.6.3 itself."""

import hashlib
import json
import socket
import ssl

import pytest

from conftest import IMAGE_063, IMAGE_159, admin_secret, ok, up, document, instances

GATEWAY_IMAGE = "chromactl-test/nginx:bookworm"

pytestmark = pytest.mark.docker


def served_fingerprint(port: int) -> str:
    """SHA-256 of the certificate the server presents (not verified: we only look at it)."""
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            return hashlib.sha256(tls.getpeercert(binary_form=True)).hexdigest()


def handshake(port: int, *, cafile: str | None = None, maximum=None) -> str:
    """'ok', or the kind of failure, of a TLS handshake verifying against `cafile`."""
    context = ssl.create_default_context(cafile=cafile)
    context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    if maximum:
        context.maximum_version = maximum
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            with context.wrap_socket(raw, server_hostname="127.0.0.1"):
                return "ok"
    except ssl.SSLCertVerificationError:
        return "untrusted"
    except (ssl.SSLError, ConnectionError):
        return "refused"


def plain_request(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        raw.sendall(b"GET /api/v2/heartbeat HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := raw.recv(4096):
            data += chunk
        return data


def test_gateway_serves_tls_with_the_projects_ca(projects, chroma_client_1x):
    p = projects("--gateway-image", GATEWAY_IMAGE, "--tls", "auto", "--tls-san", "chroma.example", image=IMAGE_159)
    result, doc = up(p)
    assert result.returncode == 0, result.stderr
    ca = str(p.folder / ".chromactl/tls/ca.pem")
    assert doc["url"] == f"https://127.0.0.1:{p.port}" and doc["tls"]["ca"] == ca
    assert set(doc["tls"]["certificate"]["names"]) >= {"localhost", "127.0.0.1", "chroma.example"}
    assert oct((p.folder / ".chromactl/tls/ca.key").stat().st_mode & 0o777) == "0o600"
    url = f"https://127.0.0.1:{p.port}"
    done = chroma_client_1x(url, "token", admin_secret(p), ["connect", "create", "add", "count"], ca=ca)
    assert done["count"] == "ok", done
    wrong = chroma_client_1x(url, "token", admin_secret(p), ["connect"], ca="/etc/ssl/certs/ca-certificates.crt")
    assert wrong["connect"].startswith("error"), wrong
    assert handshake(p.port, cafile=ca) == "ok"
    assert handshake(p.port, cafile="/etc/ssl/certs/ca-certificates.crt") == "untrusted"
    assert handshake(p.port, cafile=ca, maximum=ssl.TLSVersion.TLSv1_1) == "refused"  # TLS 1.2 and 1.3 only
    answer = plain_request(p.port)
    assert answer.startswith(b"HTTP/1.1 400") and b"HTTPS port" in answer  # plain HTTP is not served
    status = instances(ok(p("status", "--json")))[0]
    assert status["healthy"] and status["url"] == url and status["tls"]["certificate"]["days_left"] > 300

    shown = document(ok(p("tls", "show", "--json")))
    before = served_fingerprint(p.port)
    renewed = document(ok(p("tls", "renew", "--json")))
    assert renewed["applied"]["outcome"] == "reloaded" and renewed["ca_fingerprint"] == shown["ca_fingerprint"]
    assert served_fingerprint(p.port) != before  # a new leaf, from the same CA
    again = chroma_client_1x(url, "token", admin_secret(p), ["connect", "get"], ca=ca)
    assert again["get_ids"] == ["a", "b"], again  # no data lost


def test_the_javascript_client_trusts_the_ca_through_node_extra_ca_certs(projects, js_client):
    p = projects("--gateway-image", GATEWAY_IMAGE, "--tls", "auto", image=IMAGE_159)
    ok(p("up"))
    url, ca = f"https://127.0.0.1:{p.port}", str(p.folder / ".chromactl/tls/ca.pem")
    done = js_client(url, admin_secret(p), ["heartbeat", "create", "add", "count"], ca=ca)
    assert done == {"heartbeat": "ok", "create": "ok", "add": "ok", "count": "ok", "records": 2}, done
    untrusted = js_client(url, admin_secret(p), ["heartbeat"])  # without the CA
    assert untrusted["heartbeat"].startswith("error"), untrusted
    refused = js_client(url, "W" * 40, ["heartbeat", "create"], ca=ca)
    assert refused["create"].startswith("error: ChromaForbiddenError"), refused


def test_chroma_063_serves_tls_itself(projects, chroma_client, docker_client):
    p = projects("--tls", "auto", image=IMAGE_063)
    result, doc = up(p)
    assert result.returncode == 0, result.stderr
    ca = doc["tls"]["ca"]
    url = f"https://127.0.0.1:{p.port}"
    done = chroma_client(url, "token", admin_secret(p), ["connect", "create", "add", "count"], ca=ca)
    assert done["count"] == "ok", done
    with pytest.raises(ConnectionError):  # uvicorn answers plain HTTP on its TLS port with nothing
        if not plain_request(p.port):
            raise ConnectionError("empty reply")
    container = docker_client.containers.get(p.container).id
    renewed = document(ok(p("tls", "renew", "--json")))
    assert renewed["applied"]["outcome"] == "recreated"  # uvicorn reads its certificate only at start
    assert docker_client.containers.get(p.container).id != container
    assert chroma_client(url, "token", admin_secret(p), ["connect", "get"], ca=ca)["get_ids"] == ["a", "b"]


def test_operator_files_are_checked_and_served(projects, chroma_client_1x, tmp_path, docker_client):
    from chromactl.tls import issue_server, new_ca

    ca = new_ca("operator")
    leaf = issue_server(ca, ("db.internal", "127.0.0.1"))
    other = issue_server(ca, ("db.internal",))
    for name, text in {"ca.pem": ca.cert, "cert.pem": leaf.cert, "key.pem": leaf.key, "other.key": other.key}.items():
        (tmp_path / name).write_text(text)
    files = ["--tls", "files", "--tls-cert", str(tmp_path / "cert.pem"), "--tls-ca", str(tmp_path / "ca.pem")]
    bad = projects("--gateway-image", GATEWAY_IMAGE, *files, "--tls-key", str(tmp_path / "other.key"), image=IMAGE_159)
    result = bad("up")
    assert result.returncode == 1 and "the key does not match the certificate" in result.stderr, result.stderr
    assert not docker_client.containers.list(all=True, filters={"name": bad.container})  # nothing started

    good = projects("--gateway-image", GATEWAY_IMAGE, *files, "--tls-key", str(tmp_path / "key.pem"), image=IMAGE_159)
    result, doc = up(good)
    assert result.returncode == 0, result.stderr
    assert doc["tls"]["ca"] == str(tmp_path / "ca.pem")
    done = chroma_client_1x(f"https://127.0.0.1:{good.port}", "token", admin_secret(good), ["connect", "count"],
                            ca=str(tmp_path / "ca.pem"))
    assert done["connect"] == "ok", done
    assert handshake(good.port, cafile=str(tmp_path / "ca.pem")) == "ok"


def _compose_up(compose_file, project_name, docker_client, label_folder, port):
    import shutil
    import subprocess
    import time

    compose = shutil.which("docker-compose")
    assert compose, "Debian's docker-compose is needed"
    base = [compose, "-f", str(compose_file), "-p", project_name]
    started = subprocess.run(base + ["up", "-d"], capture_output=True, text=True, timeout=300)
    assert started.returncode == 0, started.stderr
    deadline = time.monotonic() + 120
    healthy = False
    while time.monotonic() < deadline and not healthy:
        containers = docker_client.containers.list(filters={"label": f"org.chromactl.project={label_folder}"})
        for container in containers:
            container.reload()
        states = [c.attrs["State"].get("Health", {}).get("Status") for c in containers]
        healthy = bool(containers) and all(state == "healthy" for state in states)
        time.sleep(1)
    return base, healthy


@pytest.mark.parametrize("image", [IMAGE_159, IMAGE_063], ids=["gateway", "native"])
def test_exported_compose_serves_tls_and_its_health_checks_pass(projects, docker_client, chroma_client,
                                                                chroma_client_1x, image):
    import subprocess

    args = ("--gateway-image", GATEWAY_IMAGE) if image == IMAGE_159 else ()
    p = projects(*args, "--tls", "auto", image=image)
    ok(p("export", "compose", "-o", "compose.yaml"))
    base, healthy = _compose_up(p.folder / "compose.yaml", "chromactltls" + str(p.port), docker_client, p.folder,
                                p.port)
    try:
        assert healthy, "the health checks never passed"
        ca = str(p.folder / ".chromactl/tls/ca.pem")
        client = chroma_client_1x if image == IMAGE_159 else chroma_client
        done = client(f"https://127.0.0.1:{p.port}", "token", admin_secret(p), ["connect", "create", "count"], ca=ca)
        assert done["count"] == "ok", done
        assert handshake(p.port, cafile=ca) == "ok"
    finally:
        subprocess.run(base + ["down", "-v"], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("image", [IMAGE_159, IMAGE_063], ids=["gateway", "native"])
def test_exported_kubernetes_carries_tls(projects, tmp_path, image):
    import base64
    import subprocess
    import sys
    from pathlib import Path

    import yaml

    args = ("--gateway-image", GATEWAY_IMAGE) if image == IMAGE_159 else ()
    p = projects(*args, "--tls", "auto", image=image)
    ok(p("export", "kubernetes", "-o", str(tmp_path / "k8s.yaml")))
    validator = Path(sys.executable).parent / "kubernetes-validate"
    check = subprocess.run([str(validator), "--strict", str(tmp_path / "k8s.yaml")], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    secret, statefulset, *_ = yaml.safe_load_all((tmp_path / "k8s.yaml").read_text())
    data = {key: base64.b64decode(value) for key, value in secret["data"].items()}
    # A CA of the export's own, constrained to the Service's names, and a certificate for them.
    assert data["ca.crt"] == (p.folder / ".chromactl/tls/kubernetes/ca.pem").read_bytes()
    assert b"PRIVATE KEY" in data["tls.key"] and data["tls.crt"].endswith(data["ca.crt"])
    from chromactl.tls import cert_info
    assert f"chromactl-{p.name}.default.svc.cluster.local" in cert_info(data["tls.crt"].decode()).names
    assert not [key for key in data if key.startswith("gateway.server.")]  # the key is stored once
    containers = {c["name"]: c for c in statefulset["spec"]["template"]["spec"]["containers"]}
    front = containers["gateway"] if image == IMAGE_159 else containers["chroma"]
    assert front["readinessProbe"]["httpGet"]["scheme"] == "HTTPS"
    if image == IMAGE_063:
        assert "--ssl-certfile /etc/chromactl/tls/server.pem" in front["args"][0]
