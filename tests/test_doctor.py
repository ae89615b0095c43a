"""`chromactl doctor`'s decisions, without an engine: a stand-in server on loopback answers as
the project's own gateway would (tests/nginx_model.py reading the nginx.conf chromactl renders
for the project's files), over plain HTTP or TLS, and doctor tells apart what a client meets.
tests/test_doctor_engine.py checks the same against the real gateway and Chroma."""

from __future__ import annotations

import datetime
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from chromactl import gateway, output, tls
from chromactl.commands import creds
from chromactl.commands.doctor import (
    CHECKABLE_ACTIONS,
    Check,
    Diagnosis,
    Skip,
    Verdict,
    action_request,
    doctor,
)
from chromactl.credentials import PROBE_USER
from chromactl.errors import UsageError
from chromactl.probe import credential_headers
from chromactl.project import load_project
from chromactl.routes import ROUTES
from chromactl.scaffold import init_project
from conftest import SCHEMA, document, free_port, run_chromactl
from nginx_model import CHROMA, Gateway, Request


class _Reporter:
    def step(self, message):
        pass


class StandIn:
    """A server on 127.0.0.1 that answers as the project's gateway decides (the model of its
    rendered nginx.conf): proxied requests get 200 as from Chroma, refusals the gateway's
    status with the headers it adds. `open` answers 200 to everything (an open server)."""

    def __init__(self, port: int, certificate: tuple[str, str] | None = None, address: str = "127.0.0.1"):
        self.port, self.model, self.open = port, None, False
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                if stand_in.open:
                    status, added = 200, {}
                else:
                    decided, added = stand_in.model.answer(Request(self.command, self.path, dict(self.headers)))
                    status = 200 if decided == CHROMA else decided
                body = b'{"nanosecond heartbeat":1}' if status == 200 else \
                    b'{"error":"AuthError","message":"Forbidden"}'
                self.send_response(status)
                for name, value in added.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _answer

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer((address, port), Handler)
        if certificate is not None:
            folder = Path(__import__("tempfile").mkdtemp(prefix="standin"))
            (folder / "cert.pem").write_text(certificate[0])
            (folder / "key.pem").write_text(certificate[1])
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(folder / "cert.pem", folder / "key.pem")
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def serve(self, root: Path) -> None:
        """Answer with the gateway the project's files make now (what `up` would give it)."""
        project = load_project(root)
        probe = credential_headers(project.settings, PROBE_USER, project.probe_secret)["Authorization"] \
            if project.settings.auth == "basic" else None
        self.model = Gateway(gateway.render_gateway(project.settings, project.credentials, probe_header=probe),
                             gateway.MOUNT_DIR)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def make_project(tmp_path: Path, **given) -> Path:
    root = tmp_path / "proj"
    init_project(root, {"image": "chromadb/chroma:1.5.9", "host": "127.0.0.1", "port": free_port(),
                        "bcrypt_rounds": 4, **given})
    return root


def add(root: Path, name: str, role: str, secret: str | None = None, **kwargs) -> str:
    return creds.add_user(root, name, role, lambda kind: secret, None, _Reporter(), **kwargs).secret


@pytest.fixture
def served(tmp_path):
    """served(**settings) -> (project root, stand-in answering for its gateway)."""
    started = []

    def start(certificate=None, **given):
        root = make_project(tmp_path, **given)
        stand_in = StandIn(load_project(root).settings.port, certificate)
        stand_in.serve(root)
        started.append(stand_in)
        return root, stand_in

    yield start
    for stand_in in started:
        stand_in.close()


def verdicts(result) -> dict:
    """check -> (verdict, diagnosis); for actions, per action."""
    return {(f.check.value + (f" {f.action}" if f.action else "")): (f.verdict, f.diagnosis) for f in result.findings}


OK = (Verdict.OK, None)


# --- the credential, told apart ------------------------------------------------------------------


def test_everything_fine_with_the_probe_user(served):
    root, _ = served()
    result = doctor(root)
    assert result.healthy and result.user == PROBE_USER and result.role == "chromactl-probe"
    assert verdicts(result) == {"port": OK, "heartbeat": OK, "strangers": OK, "credential": OK,
                                "action tenant:get_tenant": OK, "action db:get_database": OK,
                                "action db:list_collections": OK}
    assert result.url == f"http://127.0.0.1:{load_project(root).settings.port}"


def test_no_credential(served):
    root, _ = served()
    result = doctor(root, from_environment="")
    assert not result.healthy
    assert verdicts(result)["credential"] == (Verdict.FAILED, Diagnosis.NO_CREDENTIAL)
    assert verdicts(result)["action"] == (Verdict.SKIPPED, None)
    message, fix = output.doctor_finding(result, next(f for f in result.findings if f.check is Check.CREDENTIAL))
    assert message.startswith("no credential: the credential in CHROMA_CLIENT_AUTH_CREDENTIALS is empty")
    assert "CHROMA_CLIENT_AUTH_CREDENTIALS to a token" in fix


def test_wrong_secret(served):
    root, _ = served()
    result = doctor(root, from_environment="W" * 40)
    assert verdicts(result)["credential"] == (Verdict.FAILED, Diagnosis.WRONG_SECRET)
    assert result.user is None and result.role is None
    message, _ = output.doctor_finding(result, next(f for f in result.findings if f.check is Check.CREDENTIAL))
    assert "wrong secret" in message and "none of the project's tokens" in message and "HTTP 403" in message


def test_role_lacks_this_action_as_the_gateway_says(served):
    root, stand_in = served()
    token = add(root, "rita", "reader")
    stand_in.serve(root)
    allowed = doctor(root, from_environment=token, action="collection:query")
    assert allowed.healthy and allowed.user == "rita" and allowed.role == "reader"
    result = doctor(root, from_environment=token, action="collection:add")
    assert verdicts(result)["credential"] == OK
    assert verdicts(result)["action collection:add"] == (Verdict.FAILED, Diagnosis.ROLE_LACKS_ACTION)
    finding = next(f for f in result.findings if f.action == "collection:add")
    assert finding.told_by_server and finding.status == 403
    message, fix = output.doctor_finding(result, finding)
    assert message == "role lacks this action: user 'rita' has role 'reader', without collection:add (the gateway said so)"
    assert "(admin, writer)" in fix and "README: Roles" in fix


def test_the_probe_users_own_role_points_to_a_clients_credential(served):
    root, _ = served()
    result = doctor(root, action="collection:add")
    finding = next(f for f in result.findings if f.action == "collection:add")
    assert finding.diagnosis is Diagnosis.ROLE_LACKS_ACTION
    assert "CHROMA_CLIENT_AUTH_CREDENTIALS=... chromactl doctor --action collection:add" in \
        output.doctor_finding(result, finding)[1]


def test_a_secret_in_the_files_the_server_does_not_have_yet(served):
    root, _ = served()
    token = add(root, "newbie", "reader")  # the stand-in still answers with the old files
    result = doctor(root, from_environment=token)
    assert verdicts(result)["credential"] == (Verdict.FAILED, Diagnosis.NOT_APPLIED)
    assert result.user == "newbie"
    finding = next(f for f in result.findings if f.check is Check.CREDENTIAL)
    assert "`chromactl up`" in output.doctor_finding(result, finding)[1]


def test_a_revoked_secret_the_server_still_takes(served):
    root, stand_in = served()
    token = add(root, "leaver", "reader")
    stand_in.serve(root)
    creds.remove_user(root, "leaver", None, _Reporter())  # --no-apply: the server keeps it
    result = doctor(root, from_environment=token)
    assert verdicts(result)["credential"] == (Verdict.FAILED, Diagnosis.REVOCATION_PENDING)


def test_x_chroma_token(served):
    root, stand_in = served(token_header="X-Chroma-Token")
    token = add(root, "rita", "reader")
    stand_in.serve(root)
    assert doctor(root, from_environment=token).healthy
    assert verdicts(doctor(root, from_environment=token, action="db:delete_database"))[
        "action db:delete_database"] == (Verdict.FAILED, Diagnosis.ROLE_LACKS_ACTION)


def test_basic_auth_tells_wrong_password_unknown_user_and_malformed_apart(served):
    root, stand_in = served(auth="basic")
    add(root, "rita", "reader", secret="rita-chosen-password-16")  # bcrypt at cost 4
    password = add(root, "gen", "writer")  # generated: {SSHA} behind the gateway
    stand_in.serve(root)
    assert doctor(root, from_environment="rita:rita-chosen-password-16").user == "rita"
    assert doctor(root, from_environment=f"gen:{password}").healthy
    wrong = doctor(root, from_environment="rita:not-her-password-at-all")
    finding = next(f for f in wrong.findings if f.check is Check.CREDENTIAL)
    assert (finding.diagnosis, finding.known_user, finding.status) == (Diagnosis.WRONG_SECRET, True, 401)
    assert "it is not the password of user 'rita'" in output.doctor_finding(wrong, finding)[0]
    unknown = doctor(root, from_environment="nobody:rita-chosen-password-16")
    finding = next(f for f in unknown.findings if f.check is Check.CREDENTIAL)
    assert (finding.diagnosis, finding.known_user) == (Diagnosis.WRONG_SECRET, False)
    assert "the project has no user 'nobody'" in output.doctor_finding(unknown, finding)[0]
    malformed = doctor(root, from_environment="just-a-token-like-value")
    finding = next(f for f in malformed.findings if f.check is Check.CREDENTIAL)
    assert (finding.diagnosis, finding.malformed) == (Diagnosis.WRONG_SECRET, True)
    assert "is not USER:PASSWORD" in output.doctor_finding(malformed, finding)[0]
    lacks = doctor(root, from_environment="rita:rita-chosen-password-16", action="collection:upsert")
    assert verdicts(lacks)["action collection:upsert"] == (Verdict.FAILED, Diagnosis.ROLE_LACKS_ACTION)
    stdin = doctor(root, stdin_flag="--password-stdin", read_stdin=lambda: "rita-chosen-password-16", user="rita")
    assert stdin.healthy and stdin.source.value == "stdin"


# --- the way there: port, TLS, strangers ---------------------------------------------------------


def test_port_not_reachable(tmp_path):
    root = make_project(tmp_path)
    result = doctor(root)
    assert verdicts(result)["port"] == (Verdict.FAILED, Diagnosis.PORT_NOT_REACHABLE)
    assert all(v == (Verdict.SKIPPED, None) for k, v in verdicts(result).items() if k != "port")
    assert all(f.skip is Skip.EARLIER for f in result.findings[1:])


def test_server_open_to_strangers(served):
    root, stand_in = served()
    stand_in.open = True
    result = doctor(root)
    assert verdicts(result)["strangers"] == (Verdict.FAILED, Diagnosis.OPEN_TO_STRANGERS)
    assert "though the project has token auth" in output.doctor_finding(result, result.findings[2])[0]


def test_auth_none_on_loopback_is_a_warning_not_a_failure(served):
    root, stand_in = served(auth="none")
    stand_in.open = True  # no gateway: Chroma answers everyone
    result = doctor(root)
    assert result.healthy and result.source is None
    assert verdicts(result)["strangers"] == (Verdict.WARNING, Diagnosis.OPEN_TO_STRANGERS)
    assert verdicts(result)["credential"] == (Verdict.SKIPPED, None)
    message, fix = output.doctor_finding(result, result.findings[2])
    assert "anyone on this machine can read and change all data" in message and "--auth token" in fix
    with pytest.raises(UsageError, match="auth none"):
        doctor(root, stdin_flag="--token-stdin", read_stdin=lambda: "x" * 40)


def issued(ca: tls.Issued, names: tuple[str, ...]) -> tuple[str, str]:
    leaf = tls.issue_server(ca, names)
    return leaf.cert + ca.cert, leaf.key


def project_ca(root: Path) -> tls.Issued:
    return tls.Issued((root / ".chromactl/tls/ca.key").read_text(), (root / ".chromactl/tls/ca.pem").read_text())


def test_tls_ok_then_ca_not_trusted_then_plain_http(tmp_path):
    root = make_project(tmp_path, tls="auto")
    port = load_project(root).settings.port
    stand_in = StandIn(port, issued(project_ca(root), ("localhost", "127.0.0.1")))
    try:
        stand_in.serve(root)
        fine = doctor(root)
        assert fine.healthy and fine.url == f"https://127.0.0.1:{port}"
        assert fine.ca == str(root / ".chromactl/tls/ca.pem") and fine.certificate_names == ("localhost", "127.0.0.1")
        assert doctor(root, url=f"https://localhost:{port}").healthy
        other = tmp_path / "other-ca.pem"
        other.write_text(tls.new_ca("someone else").cert)
        untrusted = doctor(root, ca=str(other))
        assert verdicts(untrusted)["tls"] == (Verdict.FAILED, Diagnosis.TLS_CA_NOT_TRUSTED)
        message, fix = output.doctor_finding(untrusted, untrusted.findings[1])
        assert message.startswith(f"TLS: CA not trusted: the server's certificate is not signed by the CA the client "
                                  f"trusts ({other})")
        assert f"NODE_EXTRA_CA_CERTS={root}/.chromactl/tls/ca.pem" in fix
        plain = doctor(root, url=f"http://127.0.0.1:{port}")
        assert verdicts(plain)["tls"] == (Verdict.FAILED, Diagnosis.TLS_EXPECTED)
        assert f"use https://127.0.0.1:{port}" in output.doctor_finding(plain, plain.findings[1])[1]
    finally:
        stand_in.close()


def test_tls_name_not_in_the_certificate(tmp_path):
    root = make_project(tmp_path, tls="auto")
    stand_in = StandIn(load_project(root).settings.port, issued(project_ca(root), ("localhost",)))
    try:
        stand_in.serve(root)
        result = doctor(root)
        assert verdicts(result)["tls"] == (Verdict.FAILED, Diagnosis.TLS_NAME_NOT_IN_CERTIFICATE)
        assert result.certificate_names == ("localhost",) and not result.healthy
        message, fix = output.doctor_finding(result, result.findings[1])
        assert message == "TLS: name not in the certificate: the client connects to 127.0.0.1, the certificate " \
                          "names localhost"
        assert fix.endswith("add this one: `chromactl init --force --tls-san 127.0.0.1`, then `chromactl up`")
        assert result.ca_permits_host  # the project's CA was made for 127.0.0.1 too
        second = StandIn(load_project(root).settings.port, issued(project_ca(root), ("localhost",)), "127.0.0.2")
        try:
            second.serve(root)
            other = doctor(root, url=f"https://127.0.0.2:{load_project(root).settings.port}")
        finally:
            second.close()
        message, fix = output.doctor_finding(other, other.findings[1])
        assert "`chromactl init --force --tls-san 127.0.0.2`, then `chromactl tls renew --new-ca` (the project's " \
               "CA may sign only for localhost, 127.0.0.1, ::1; clients must then trust the new CA)" in fix
    finally:
        stand_in.close()


def test_https_to_a_plain_port(served):
    root, _ = served()
    port = load_project(root).settings.port
    result = doctor(root, url=f"https://127.0.0.1:{port}")
    assert verdicts(result)["tls"] == (Verdict.FAILED, Diagnosis.NO_TLS)


def test_an_expired_certificate(tmp_path, monkeypatch):
    root = make_project(tmp_path, tls="auto")
    ca = project_ca(root)
    real_now = tls._now
    monkeypatch.setattr(tls, "_now", lambda: real_now() - datetime.timedelta(days=800))
    cert = issued(ca, ("localhost", "127.0.0.1"))  # issued 800 days ago for 397 days
    monkeypatch.setattr(tls, "_now", real_now)
    stand_in = StandIn(load_project(root).settings.port, cert)
    try:
        stand_in.serve(root)
        result = doctor(root)
        assert verdicts(result)["tls"] == (Verdict.FAILED, Diagnosis.TLS_CERTIFICATE_EXPIRED)
    finally:
        stand_in.close()


# --- what is asked, and what is refused before anything is asked ---------------------------------


def test_every_action_but_reset_has_a_request_that_changes_nothing():
    for action in CHECKABLE_ACTIONS:
        method, path, body = action_request(action)
        assert any(action in allowed and m == method for m, _, allowed in ROUTES)
        if method != "GET":  # a write or a delete is aimed at names that do not exist, with a body Chroma refuses
            assert "default_database" not in path, (action, path)
            assert "chromactl-doctor-" in path or path == "/api/v2/tenants", (action, path)
            assert body == (b"{}" if method in ("POST", "PUT") else None)
    assert "system:reset" not in CHECKABLE_ACTIONS


@pytest.mark.parametrize("kwargs, words", [
    ({"action": "system:reset"}, "no request for it is harmless"),
    ({"user": "admin"}, "--user goes with --password-stdin"),
    ({"stdin_flag": "--password-stdin", "read_stdin": lambda: "x", "user": "admin"}, "this project uses tokens"),
    ({"stdin_flag": "--token-stdin", "read_stdin": lambda: "x", "user": "admin"}, "--user is for basic auth"),
    ({"url": "ftp://127.0.0.1:1"}, "--url"),
    ({"url": "https://127.0.0.1:99999"}, "--url"),
    ({"url": "127.0.0.1:8000"}, "--url"),
])
def test_usage_errors(tmp_path, kwargs, words):
    root = make_project(tmp_path)
    with pytest.raises(UsageError, match=words.replace("(", r"\(")):
        doctor(root, **kwargs)


def test_the_schema_knows_every_check_outcome_and_diagnosis():
    checks = SCHEMA["$defs"]["doctor"]["properties"]["checks"]["items"]["properties"]
    assert checks["check"]["enum"] == [c.value for c in Check]
    assert checks["outcome"]["enum"] == [v.value for v in Verdict]
    assert checks["diagnosis"]["enum"] == [d.value for d in Diagnosis] + [None]


def test_the_cli_prints_one_document_and_exits_4_when_a_check_fails(served, tmp_path):
    root, _ = served()
    good = run_chromactl("doctor", "--json", cwd=root)
    assert good.returncode == 0, good.stderr
    doc = document(good, "doctor")
    assert doc["healthy"] and doc["credential"] == {"source": "probe", "user": PROBE_USER, "role": "chromactl-probe"}
    assert [c["check"] for c in doc["checks"]] == ["port", "heartbeat", "strangers", "credential", "action", "action",
                                                   "action"]
    bad = run_chromactl("doctor", "--json", cwd=root, env={"CHROMA_CLIENT_AUTH_CREDENTIALS": "W" * 40})
    assert bad.returncode == 4
    doc = document(bad, "doctor")
    [failed] = [c for c in doc["checks"] if c["outcome"] == "failed"]
    assert failed["diagnosis"] == "wrong_secret" and failed["fix"] and "W" * 40 not in bad.stdout
    text = run_chromactl("doctor", cwd=root, env={"CHROMA_CLIENT_AUTH_CREDENTIALS": "", "COLUMNS": "100"})
    assert text.returncode == 4 and "no credential" in text.stdout and text.stdout.endswith("1 check failed.\n")
    assert max(len(line) for line in text.stdout.splitlines()) <= 100
    token = run_chromactl("doctor", "--token-stdin", cwd=root, input="W" * 40 + "\n")
    assert token.returncode == 4 and "wrong secret" in token.stdout and "the credential read" in token.stdout


def test_a_remote_engines_server_is_checked_through_the_engines_host(tmp_path):
    """Where the engine runs (DOCKER_HOST, not asked) is where its server is reached by default."""
    root = make_project(tmp_path, host="0.0.0.0", tls="off")
    port = load_project(root).settings.port
    assert doctor(root, engine_address="ssh://ana@127.0.0.1").url == f"http://127.0.0.1:{port}"
    remote = doctor(root, engine_address="tcp://127.0.0.2:2376")  # loopback stands in for another host
    assert remote.url == f"http://127.0.0.2:{port}" and remote.findings[0].diagnosis is Diagnosis.PORT_NOT_REACHABLE
    assert doctor(root, engine_address="unix:///var/run/docker.sock").url == f"http://127.0.0.1:{port}"
