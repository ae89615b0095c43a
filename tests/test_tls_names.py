"""The certificate serves the clients it is for: published on a wildcard address it covers
the machine's names and addresses (checked with Python's own TLS verification against a
real TLS server on this machine), and the Kubernetes export's covers its Service's names."""

import base64
import socket
import ssl
import threading

import pytest
import yaml

from chromactl.certs import machine_names
from chromactl.tls import cert_info
from conftest import ok


def test_a_wildcard_address_gets_the_machines_names_and_addresses(chromactl):
    ok(chromactl("init"))  # 0.0.0.0 by default, so TLS auto
    names = set(cert_info((chromactl.project / ".chromactl/tls/server/server.pem").read_text()).names)
    machine = set(machine_names())
    assert socket.gethostname() in names and machine <= names, (machine, names)
    assert {"localhost", "127.0.0.1", "::1"} <= names
    assert not any(n.startswith("172.17.") for n in names)  # the engine's own bridge: no client uses it


def test_a_remote_engine_gives_its_host_name():
    assert machine_names("ssh://ops@db1.example.com") == ("db1.example.com",)
    assert machine_names("tcp://10.1.2.3:2376") == ("10.1.2.3",)


def test_a_client_reaching_the_machine_by_its_name_verifies_the_certificate(chromactl, tmp_path):
    """A TLS server on this machine with the project's certificate, reached by the machine's
    host name as a remote client would (resolved here, so the traffic stays on this machine)."""
    ok(chromactl("init"))
    tls = chromactl.project / ".chromactl/tls"
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(tls / "server/server.pem", tls / "server/server.key")
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve():
        connection, _ = listener.accept()
        try:
            with server.wrap_socket(connection, server_side=True) as wrapped:
                wrapped.recv(1)
        except (ssl.SSLError, OSError):
            pass

    threading.Thread(target=serve, daemon=True).start()
    client = ssl.create_default_context(cafile=str(tls / "ca.pem"))
    with socket.create_connection(("127.0.0.1", port)) as raw:  # the name is checked, the packet stays here
        with client.wrap_socket(raw, server_hostname=socket.gethostname()) as wrapped:
            assert wrapped.version() in ("TLSv1.2", "TLSv1.3")
    listener.close()


def test_the_kubernetes_export_covers_the_services_names(chromactl, tmp_path):
    ok(chromactl("init", "--name", "search"))
    ok(chromactl("export", "kubernetes", "--namespace", "prod", "-o", str(tmp_path / "k8s.yaml")))
    secret = next(d for d in yaml.safe_load_all((tmp_path / "k8s.yaml").read_text()) if d["kind"] == "Secret")
    names = set(cert_info(base64.b64decode(secret["data"]["tls.crt"]).decode()).names)
    service = "chromactl-search"
    assert {service, f"{service}.prod", f"{service}.prod.svc", f"{service}.prod.svc.cluster.local"} <= names


def _serve_once(cert_pem: str, key_pem: str, tmp_path) -> int:
    (tmp_path / "leaf.pem").write_text(cert_pem)
    (tmp_path / "leaf.key").write_text(key_pem)
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(tmp_path / "leaf.pem", tmp_path / "leaf.key")
    listener = socket.create_server(("127.0.0.1", 0))

    def serve():
        connection, _ = listener.accept()
        try:
            with server.wrap_socket(connection, server_side=True) as wrapped:
                wrapped.recv(1)
        except (ssl.SSLError, OSError):
            pass
        listener.close()

    threading.Thread(target=serve, daemon=True).start()
    return listener.getsockname()[1]


def test_a_stolen_ca_key_mints_nothing_a_client_accepts_for_another_host(chromactl, tmp_path):
    """The project's CA is name-constrained (critical) to the names it serves: a certificate
    for any other host, signed with a copy of ca.key, fails a client's verification."""
    from chromactl.tls import Issued, issue_server, permitted_names

    ok(chromactl("init"))
    tls = chromactl.project / ".chromactl/tls"
    ca = Issued((tls / "ca.key").read_text(), (tls / "ca.pem").read_text())
    assert set(permitted_names(ca.cert)) >= {"localhost", "127.0.0.1", socket.gethostname()}
    client = ssl.create_default_context(cafile=str(tls / "ca.pem"))
    for host, accepted in (("bank.example.com", False), ("localhost", True)):
        forged = issue_server(ca, (host,))
        port = _serve_once(forged.cert, forged.key, tmp_path)
        with socket.create_connection(("127.0.0.1", port)) as raw:  # the name is checked, the packet stays here
            try:
                client.wrap_socket(raw, server_hostname=host).close()
                verified = True
            except ssl.SSLCertVerificationError as exc:
                verified = False
                assert "name constraint" in str(exc).lower() or "permitted" in str(exc).lower(), exc
        assert verified is accepted, host


def test_a_name_the_ca_may_not_sign_keeps_the_old_certificate_and_says_how(chromactl, tmp_path):
    ok(chromactl("init"))
    before = (chromactl.project / ".chromactl/tls/server/server.pem").read_text()
    ok(chromactl("init", "--force", "--tls-san", "chroma.example.org"))
    shown = chromactl("tls", "show")
    # tls show changes nothing; the next issue (up, renew) cannot add the name: it says so.
    renewed = chromactl("tls", "renew", env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"})
    assert renewed.returncode == 0, renewed.stderr
    assert "cannot name chroma.example.org" in renewed.stderr and "--new-ca" in renewed.stderr
    names = cert_info((chromactl.project / ".chromactl/tls/server/server.pem").read_text()).names
    assert "chroma.example.org" not in names and before
    again = ok(chromactl("tls", "renew", "--new-ca", env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"}))
    assert "new CA" in again.stderr
    assert "chroma.example.org" in cert_info((chromactl.project / ".chromactl/tls/server/server.pem").read_text()).names
