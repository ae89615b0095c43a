"""`chromactl doctor` against real servers: Chroma 1.5.9 behind the real gateway (token with
TLS, reached by this machine's own host name as a remote client would; basic auth), Chroma
1.5.9 with auth none, and Chroma 0.6.3 enforcing its own auth. Each diagnosis is produced by
the real thing, and the gateway's refusals are checked as raw responses: a stranger's and a
wrong secret's are what they always were; only a caller who authenticated learns that its
role lacks the action."""

from __future__ import annotations

import socket
import ssl

import pytest

from conftest import IMAGE_063, IMAGE_159, add_user, admin_secret, document, free_port, ok, up

pytestmark = pytest.mark.docker

GATEWAY_IMAGE = "chromactl-test/nginx:bookworm"
VARIABLE = "CHROMA_CLIENT_AUTH_CREDENTIALS"
COLLECTIONS = "/api/v2/tenants/default_tenant/databases/default_database/collections"


def doctor(project, *args, credential: str | None = None, input: str | None = None):
    env = {VARIABLE: credential} if credential is not None else {}
    result = project("doctor", "--json", *args, env=env, input=input)
    doc = document(result, "doctor")
    assert result.returncode == (0 if doc["healthy"] else 4), (result.returncode, doc)
    return doc


def failed(doc) -> list[tuple[str, str]]:
    return [(c["check"], c["diagnosis"]) for c in doc["checks"] if c["outcome"] == "failed"]


def raw(host: str, port: int, request: bytes, cafile: str | None = None, server_name: str | None = None) -> bytes:
    """One request, as bytes on the wire, and the whole answer."""
    with socket.create_connection((host, port), timeout=10) as sock:
        if cafile:
            context = ssl.create_default_context(cafile=cafile)
            sock = context.wrap_socket(sock, server_hostname=server_name or host)
        sock.sendall(request)
        answer = b""
        while b"\r\n\r\n" not in answer or len(answer.split(b"\r\n\r\n", 1)[1]) < _length(answer):
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
        return answer


def _length(answer: bytes) -> int:
    for line in answer.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.lower() == b"content-length":
            return int(value)
    return 0


def without_date(answer: bytes) -> bytes:
    head, _, body = answer.partition(b"\r\n\r\n")
    return b"\r\n".join(l for l in head.split(b"\r\n") if not l.lower().startswith(b"date:")) + b"\r\n\r\n" + body


FORBIDDEN_BODY = b'{"error":"AuthError","message":"Forbidden"}'


@pytest.fixture
def gateway_image(docker_client):
    docker_client.images.get(GATEWAY_IMAGE)
    return GATEWAY_IMAGE


def test_token_over_tls_by_this_machines_name(projects, gateway_image, tmp_path):
    hostname = socket.gethostname()
    address = socket.gethostbyname(hostname)  # this machine's own address for its name: traffic stays here
    p = projects("--gateway-image", gateway_image, "--host", address, "--tls", "auto", image=IMAGE_159)
    result, _ = up(p)
    assert result.returncode == 0, result.stderr
    ca = str(p.folder / ".chromactl/tls/ca.pem")
    admin = admin_secret(p)
    reader = add_user(p, "rita", "reader")

    # All well, with chromactl's probe user and with a client's own token, at the project's URL.
    doc = doctor(p)
    assert doc["healthy"] and doc["url"] == f"https://{address}:{p.port}" and doc["ca"] == ca
    assert [c["outcome"] for c in doc["checks"]] == ["ok"] * 8
    doc = doctor(p, "--action", "collection:delete_collection", credential=admin)
    assert doc["healthy"] and doc["credential"] == {"source": "environment", "user": "admin", "role": "admin"}

    # TLS: name not in the certificate (by this machine's name: the certificate names its address).
    by_name = f"https://{hostname}:{p.port}"
    doc = doctor(p, "--url", by_name)
    assert failed(doc) == [("tls", "tls_name_not_in_certificate")], doc
    assert f"`chromactl init --force --tls-san {hostname}`, then `chromactl tls renew --new-ca`" in \
        doc["checks"][1]["fix"]  # the project's CA is constrained to the names it was made for
    # TLS: CA not trusted.
    other = tmp_path / "other-ca.pem"
    from chromactl.tls import new_ca

    other.write_text(new_ca("elsewhere").cert)
    doc = doctor(p, "--ca", str(other))
    assert failed(doc) == [("tls", "tls_ca_not_trusted")] and ca in doc["checks"][1]["fix"]
    # Port not reachable.
    doc = doctor(p, "--url", f"https://{address}:{free_port()}")
    assert failed(doc) == [("port", "port_not_reachable")]
    # Plain http to the TLS port.
    assert failed(doctor(p, "--url", f"http://{address}:{p.port}")) == [("tls", "tls_expected")]

    # The credential: none, wrong, a role that lacks the action (the gateway says so).
    assert failed(doctor(p, credential="")) == [("credential", "no_credential")]
    assert failed(doctor(p, credential="W" * 40)) == [("credential", "wrong_secret")]
    doc = doctor(p, "--action", "collection:add", credential=reader)
    assert failed(doc) == [("action", "role_lacks_action")] and doc["credential"]["role"] == "reader"
    assert "user 'rita' has role 'reader', without collection:add (the gateway said so)" in \
        [c for c in doc["checks"] if c["outcome"] == "failed"][0]["message"]
    assert doctor(p, "--action", "collection:query", credential=reader)["healthy"]
    assert failed(doctor(p, "--token-stdin", "--action", "collection:add", input=reader + "\n")) == \
        [("action", "role_lacks_action")]

    # The files and the running server disagree: a secret not given yet, one revoked but still taken.
    late = document(ok(p("creds", "add", "late", "--no-apply", "--json")))["secret"]
    assert failed(doctor(p, credential=late)) == [("credential", "credential_not_applied")]
    ok(p("creds", "rm", "rita", "--no-apply", "--json"))
    assert failed(doctor(p, credential=reader)) == [("credential", "revocation_pending")]
    ok(p("up", "--json"))
    assert doctor(p, credential=late)["healthy"]
    assert failed(doctor(p, credential=reader)) == [("credential", "wrong_secret")]

    # The project's CA may not sign for the name (it is constrained to the names it was made for):
    # adding it to the settings alone does not put it in the certificate, and doctor still says so.
    ok(p("init", "--force", "--tls-san", hostname, "--json"))
    assert "cannot name " + hostname in ok(p("up")).stderr
    assert failed(doctor(p, "--url", by_name)) == [("tls", "tls_name_not_in_certificate")]

    # The refusals on the wire: a stranger's and a wrong token's are what they were, byte for
    # byte (but the date); an authenticated caller refused by its role learns only that.
    def get(path: str, extra: str = "") -> bytes:
        request = f"GET {path} HTTP/1.1\r\nHost: {address}:{p.port}\r\n{extra}Connection: close\r\n\r\n".encode()
        return without_date(raw(address, p.port, request, cafile=ca))

    expected = (b"HTTP/1.1 403 Forbidden\r\nServer: nginx\r\nContent-Type: application/json\r\n"
                b"Content-Length: 43\r\nConnection: close\r\n\r\n" + FORBIDDEN_BODY)
    assert get(COLLECTIONS) == expected
    assert get(COLLECTIONS, f"Authorization: Bearer {'W' * 40}\r\n") == expected
    assert get("/api/v2/auth/identity", f"Authorization: Bearer {'W' * 40}\r\n") == expected
    assert get("/api/v2/reset", f"Authorization: Bearer {admin}x\r\n") == expected
    probe = (p.folder / ".chromactl/probe-secret").read_text().strip()
    refused_role = get("/api/v2/tenants/default_tenant/databases", f"Authorization: Bearer {probe}\r\n")
    assert refused_role == (b"HTTP/1.1 403 Forbidden\r\nServer: nginx\r\nContent-Type: application/json\r\n"
                            b"Content-Length: 43\r\nConnection: close\r\nX-Chromactl-Refused: role\r\n\r\n"
                            + FORBIDDEN_BODY)


def test_a_name_given_at_init_is_in_the_certificate(projects, gateway_image):
    """What doctor's fix for a missing name leads to: a certificate from a CA made for it."""
    hostname = socket.gethostname()
    address = socket.gethostbyname(hostname)
    p = projects("--gateway-image", gateway_image, "--host", address, "--tls", "auto", "--tls-san", hostname,
                 image=IMAGE_159)
    result, _ = up(p)
    assert result.returncode == 0, result.stderr
    doc = doctor(p, "--url", f"https://{hostname}:{p.port}", credential=admin_secret(p))
    assert doc["healthy"] and doc["credential"]["user"] == "admin", doc


def test_basic_auth_behind_the_gateway(projects, gateway_image):
    p = projects(init=False)
    doc = document(ok(p("init", "--name", p.name, "--image", IMAGE_159, "--gateway-image", gateway_image,
                        "--host", "127.0.0.1", "--port", str(p.port), "--auth", "basic", "--json")), "init")
    admin = doc["secret"]
    add_user(p, "rita", "reader", stdin="rita-chosen-password-16\n", flag="--password-stdin")
    result, _ = up(p)
    assert result.returncode == 0, result.stderr
    assert doctor(p, credential=f"admin:{admin}")["credential"] == {"source": "environment", "user": "admin",
                                                                     "role": "admin"}
    doc = doctor(p, credential="rita:not-her-password-at-all")
    assert failed(doc) == [("credential", "wrong_secret")]
    assert "it is not the password of user 'rita'" in doc["checks"][3]["message"]
    doc = doctor(p, credential="nobody:rita-chosen-password-16")
    assert failed(doc) == [("credential", "wrong_secret")] and "no user 'nobody'" in doc["checks"][3]["message"]
    assert failed(doctor(p, credential="rita-chosen-password-16")) == [("credential", "wrong_secret")]
    assert failed(doctor(p, "--action", "collection:upsert", credential="rita:rita-chosen-password-16")) == \
        [("action", "role_lacks_action")]
    stdin = doctor(p, "--password-stdin", "--user", "rita", input="rita-chosen-password-16\n")
    assert stdin["healthy"] and stdin["credential"]["source"] == "stdin"


def test_open_to_strangers(projects, gateway_image):
    """auth none on loopback: a warning (it was chosen); the same server reached where a project
    expects auth: a failure."""
    open_one = projects("--auth", "none", image=IMAGE_159)
    result, _ = up(open_one)
    assert result.returncode == 0, result.stderr
    doc = doctor(open_one)
    assert doc["healthy"] and doc["credential"] is None
    strangers = [c for c in doc["checks"] if c["check"] == "strangers"][0]
    assert (strangers["outcome"], strangers["diagnosis"]) == ("warning", "open_to_strangers")
    locked = projects("--gateway-image", gateway_image, image=IMAGE_159)  # never started: its files suffice
    doc = doctor(locked, "--url", open_one.url)
    assert failed(doc) == [("strangers", "open_to_strangers")]


def test_native_063_decides_roles_from_the_files(projects):
    """Chroma 0.6.3 with its own auth (no gateway, so no reason header): the files say whose token
    it is and what its role allows."""
    p = projects(image=IMAGE_063)
    reader = add_user(p, "rita", "reader")
    result, _ = up(p)
    assert result.returncode == 0, result.stderr
    assert doctor(p)["healthy"]
    assert doctor(p, "--action", "collection:count", credential=reader)["healthy"]
    doc = doctor(p, "--action", "collection:add", credential=reader)
    assert failed(doc) == [("action", "role_lacks_action")]
    assert "(per authz.yaml)" in [c for c in doc["checks"] if c["outcome"] == "failed"][0]["message"]
    assert failed(doctor(p, credential="W" * 40)) == [("credential", "wrong_secret")]
