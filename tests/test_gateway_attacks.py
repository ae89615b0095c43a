"""Adversarial tests of the nginx gateway in front of a real Chroma 1.5.9: raw HTTP over
sockets (no client library to normalise the request), each asserting the gateway's
decision and that Chroma's data did not change. One token project (with a reader, rita)
and one basic-auth project are brought up once for the whole module."""

import contextlib
import json
import re
import secrets
import socket
import subprocess
import time
import urllib.error
import urllib.request
from base64 import b64encode
from collections import namedtuple

import pytest

from chromactl.roles import READER
from conftest import IMAGE_063, IMAGE_159, ROUNDS, add_user, admin_secret, free_port, ok, run_chromactl, up, document

GATEWAY_IMAGE = "chromactl-test/nginx:bookworm"
LABEL = "org.chromactl.project"
BASE = "/api/v2/tenants/default_tenant/databases/default_database"
DATABASES = "/api/v2/tenants/default_tenant/databases"
RECORDS = {"ids": ["a", "b", "c"], "embeddings": [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
           "documents": ["alpha", "beta", "gamma"]}
EVIL = {"ids": ["evil"], "embeddings": [[0.5, 0.5, 0.5]], "documents": ["evil"]}

pytestmark = pytest.mark.docker

Response = namedtuple("Response", "status headers body")


# --- raw HTTP ------------------------------------------------------------------------------------

def _dechunk(data: bytes) -> tuple[bytes, bytes]:
    body = b""
    for _ in range(100000):
        line, sep, data = data.partition(b"\r\n")
        size = int(line.split(b";")[0].strip() or b"0", 16) if sep else 0
        if size == 0:  # the last chunk: skip any trailers, up to the empty line
            while sep and line:
                line, sep, data = data.partition(b"\r\n")
            return body, data
        body, data = body + data[:size], data[size + 2:]
    return body, data


def parse(data: bytes, head: bool = False) -> list[Response]:
    """Every response in what the server sent: framed by Content-Length, chunked, or the close."""
    responses = []
    while (end := data.find(b"\r\n\r\n")) >= 0:
        lines = data[:end].decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        data = data[end + 4:]
        if head or status in (204, 304) or status < 200:
            body = b""
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            body, data = _dechunk(data)
        elif "content-length" in headers:
            body, data = data[:int(headers["content-length"])], data[int(headers["content-length"]):]
        else:
            body, data = data, b""
        responses.append(Response(status, headers, body))
    return responses


def raw(port: int, data: bytes, timeout: float = 5.0, head: bool = False) -> list[Response]:
    """Send the bytes as they are; read until the server closes (or the timeout); parse."""
    received = []
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        with contextlib.suppress(OSError):  # the server may answer and close before reading it all
            s.sendall(data)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            s.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                chunk = s.recv(65536)
            except (socket.timeout, ConnectionResetError):
                break
            if not chunk:
                break
            received.append(chunk)
    raw.last = parse(b"".join(received), head)
    return raw.last


def bearer(token: str) -> str:
    return f"Authorization: Bearer {token}"


def basic(user: str, password: str) -> str:
    return "Authorization: Basic " + b64encode(f"{user}:{password}".encode()).decode()


def request(p, method: str, target: str, headers=(), body=None, close: bool = True) -> bytes:
    if isinstance(body, dict):
        body = json.dumps(body).encode()
    lines = [f"{method} {target} HTTP/1.1", f"Host: 127.0.0.1:{p.port}", *headers]
    if body is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")


def statuses(p, data: bytes, **kwargs) -> list[int]:
    return [r.status for r in raw(p.port, data, **kwargs)]


# --- Chroma's data, read with the admin's credentials over normal requests ------------------------

def api(p, method: str, path: str, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{p.port}{path}", data=data, method=method,
                                 headers={"Content-Type": "application/json", **p.admin_header})
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def snapshot(p) -> dict:
    """Databases, whether the tenant "evil" exists, every collection's id, count and records."""
    state = {"databases": sorted(d["name"] for d in api(p, "GET", DATABASES)[1]),
             "tenant evil": api(p, "GET", "/api/v2/tenants/evil")[0], "collections": {}}
    for c in api(p, "GET", BASE + "/collections")[1]:
        path = f"{BASE}/collections/{c['id']}"
        records = api(p, "POST", path + "/get", {"include": ["documents"]})[1]
        state["collections"][c["name"]] = (c["id"], api(p, "GET", path + "/count")[1],
                                           sorted(zip(records["ids"], records["documents"])))
    return state


def seed(p) -> None:
    """(Re)create the one collection, "seed", with three records, and nothing else."""
    for c in api(p, "GET", BASE + "/collections")[1]:
        api(p, "DELETE", f"{BASE}/collections/{c['name']}")  # Chroma 1.x deletes by name
    for d in api(p, "GET", DATABASES)[1]:
        if d["name"] != "default_database":
            api(p, "DELETE", f"{DATABASES}/{d['name']}")
    status, doc = api(p, "POST", BASE + "/collections", {"name": "seed", "get_or_create": True})
    assert status == 200, doc
    p.C = f"{BASE}/collections/{doc['id']}"
    assert api(p, "POST", p.C + "/add", RECORDS)[0] == 201
    p.baseline = snapshot(p)


def intact(p, before: dict, verdict: bool, observed) -> None:
    """Assert the decision and that nothing changed, reporting both either way."""
    after = snapshot(p)
    changed = "" if after == before else f"; DATA CHANGED: {before} -> {after}"
    bodies = [r.body[:90] for r in getattr(raw, "last", [])]
    assert verdict and not changed, f"observed {observed} {bodies}{changed}"


def attack(p, data: bytes, expect, **kwargs) -> None:
    """Send raw bytes; the statuses must equal `expect` (or satisfy it, if callable); no data changed."""
    before = snapshot(p)
    got = statuses(p, data, **kwargs)
    intact(p, before, expect(got) if callable(expect) else got == expect, got)


# --- the projects, brought up once ---------------------------------------------------------------

@pytest.fixture(scope="module")
def factory(tmp_path_factory, docker_client):
    """new(*init_args) inits a 1.5.9 project behind the gateway. Everything a project started
    is removed by discard(p), or at the end of the module, pass or fail (like `projects`)."""
    try:
        docker_client.images.get(GATEWAY_IMAGE)
    except Exception:
        pytest.fail(f"the locally built image {GATEWAY_IMAGE} is missing (ci/chroma-images.sh builds it)")
    made = []

    def new(*init_args):
        name = "atk" + secrets.token_hex(4)
        folder, port = tmp_path_factory.mktemp(name), free_port()

        def run(*args, **kwargs):
            kwargs.setdefault("cwd", folder)
            kwargs["env"] = {**ROUNDS, **kwargs.get("env", {})}
            return run_chromactl(*args, **kwargs)

        run.folder, run.name, run.port = folder, name, port
        run.container, run.gateway = f"chromactl-{name}", f"chromactl-{name}-gateway"
        made.append(run)
        run.init = document(ok(run("init", "--name", name, "--image", IMAGE_159, "--gateway-image", GATEWAY_IMAGE,
                                     "--host", "127.0.0.1", "--port", str(port), "--json", *init_args)))
        return run

    def discard(run):
        label = {"label": f"{LABEL}={run.folder}"}
        for container in docker_client.containers.list(all=True, filters=label):
            container.remove(force=True)
        for network in docker_client.networks.list(filters=label):
            network.remove()
        for volume in docker_client.volumes.list(filters={"name": f"chromactl-{run.name}-data"}):
            if volume.name == f"chromactl-{run.name}-data":
                volume.remove(force=True)

    new.discard = discard
    yield new
    for run in made:
        discard(run)


def _up(p, reader: str, admin: str, admin_header: str):
    p.reader, p.admin, p.admin_header = reader, admin, dict([admin_header.split(": ", 1)])
    result, _ = up(p)
    assert result.returncode == 0, result.stderr
    seed(p)
    return p


@pytest.fixture(scope="module")
def token_project(factory):
    p = factory()
    return _up(p, add_user(p, "rita", "reader"), admin_secret(p), bearer(admin_secret(p)))


@pytest.fixture
def tp(token_project):
    """The token project, seeded again if an earlier attack changed its data."""
    if snapshot(token_project) != token_project.baseline:
        seed(token_project)
    return token_project


@pytest.fixture(scope="module")
def bp(factory):
    p = factory("--auth", "basic")
    return _up(p, add_user(p, "rita", "reader"), p.init["secret"], basic("admin", p.init["secret"]))


# --- RBAC on well-formed requests --------------------------------------------------------------

def test_reader_may_read(tp):
    """Control: the reader's own reads pass, so the refusals below are decisions, not breakage."""
    before, query = snapshot(tp), {"query_embeddings": [[1, 0, 0]], "n_results": 1}
    reads = [("GET", BASE + "/collections", None), ("GET", tp.C + "/count", None), ("POST", tp.C + "/get", {}),
             ("POST", tp.C + "/query", query), ("GET", DATABASES, None)]
    got = [statuses(tp, request(tp, m, t, [bearer(tp.reader)], b)) for m, t, b in reads]
    intact(tp, before, got == [[200]] * 5, got)


@pytest.mark.parametrize("method,suffix,body", [
    ("POST", "/add", EVIL), ("POST", "/update", {"ids": ["a"], "documents": ["changed"]}),
    ("POST", "/upsert", EVIL), ("POST", "/delete", {"ids": ["a"]}), ("DELETE", "", None),
    ("POST", "databases", {"name": "evil_db"}), ("POST", "tenants", {"name": "evil"})])
def test_reader_may_not_write(tp, method, suffix, body):
    """Privilege escalation through the front door: each write the reader's role lacks is 403."""
    target = {"databases": DATABASES, "tenants": "/api/v2/tenants", "": f"{BASE}/collections/seed"}.get(
        suffix, tp.C + suffix)
    attack(tp, request(tp, method, target, [bearer(tp.reader)], body), [403])


# --- raw paths that nginx and Chroma could read differently ------------------------------------------

PATHS = [  # (id, method, raw target, credentials); {C} is the seeded collection's path
    ("tenant-dotdot-2F-to-heartbeat", "GET", "/api/v2/tenants/..%2Fheartbeat", None),
    ("tenant-dotdot-2F-to-heartbeat-reader", "GET", "/api/v2/tenants/..%2Fheartbeat", "reader"),
    ("crn-2F-dotdot-to-heartbeat", "GET", "/api/v2/collections/t:d:c%2F..%2F..%2Fheartbeat", None),
    ("crn-2F-dotdot-to-heartbeat-reader", "GET", "/api/v2/collections/t:d:c%2F..%2F..%2Fheartbeat", "reader"),
    *[(f"{op}-{name}", "POST", f"{{C}}/{op}{code}", "reader") for op, name, code in (
        ("get", "LF", "%0A"), ("add", "LF", "%0A"), ("get", "NUL", "%00"), ("get", "CR", "%0D"), ("get", "TAB", "%09"),
        ("get", "1f", "%1f"), ("get", "DEL", "%7F"))],
    ("heartbeat-LF", "GET", "/api/v2/heartbeat%0A", None),
    ("double-slash-heartbeat", "GET", "//api/v2/heartbeat", None),
    ("double-slash-list", "GET", "/" + BASE + "/collections", "reader"),
    ("inner-double-slash-add", "POST", "{C}//add", "reader"),
    ("dotdot-from-public", "GET", "/api/v2/heartbeat/../tenants/default_tenant/databases/default_database/collections",
     None),
    ("2E2E-from-public", "GET", "/api/v2/pre-flight-checks/%2E%2E/version", None),
    ("2e2e-from-public-reader", "GET", "/api/v2/healthcheck/%2e%2e/version", "reader"),
    ("add-2F-dotdot-get", "POST", "{C}/add%2F..%2Fget", "reader"),
    ("get-2f-dotdot-add", "POST", "{C}/get%2f..%2fadd", "reader"),
    ("backslash-5C", "POST", "{C}%5Cadd", "reader"),
    ("backslash-5c-public", "GET", "/api/v2/version%5c..%5cheartbeat", None),
]


@pytest.mark.parametrize("method,target,who", [c[1:] for c in PATHS], ids=[c[0] for c in PATHS])
def test_ambiguous_raw_path_is_400(tp, method, target, who):
    """Path confusion: a raw target with .., //, %2e, %2f, %5c or an encoded control character
    is refused (400) before routing, in every location, the public ones included."""
    headers = [bearer(tp.reader)] if who else []
    attack(tp, request(tp, method, target.replace("{C}", tp.C), headers, EVIL if method == "POST" else None), [400])


# --- methods and override headers ----------------------------------------------------------------

@pytest.mark.parametrize("method,suffix,who", [
    ("post", "/add", "reader"), ("post", "/add", "admin"), ("delete", "", "admin"),
    ("FOO", "/get", "reader"), ("FOO", "", "admin"), ("PROPFIND", "", "reader")])
def test_odd_methods_are_refused(tp, method, suffix, who):
    """Method confusion: a lowercase or unknown method never slips past the role table (4xx)."""
    target = f"{BASE}/collections/seed" if suffix == "" else tp.C + suffix
    data = request(tp, method, target, [bearer(getattr(tp, who))], EVIL if method == "post" else None)
    attack(tp, data, lambda got: len(got) == 1 and 400 <= got[0] < 500)


@pytest.mark.parametrize("path", ["/collections", "/collections/seed", "/collections_count"])
def test_head_is_not_mapped(tp, path):
    """HEAD is not in the role table: refused (403) even where the reader may GET."""
    attack(tp, request(tp, "HEAD", BASE + path, [bearer(tp.reader)]), [403], head=True)


def test_override_headers_do_not_change_the_method_or_path(tp):
    """Verb and URL tunnelling: X-HTTP-Method-Override, X-Original-URL, X-Rewrite-URL on an allowed get."""
    headers = [bearer(tp.reader), "X-HTTP-Method-Override: DELETE", "X-HTTP-Method: DELETE",
               "X-Method-Override: DELETE",
               f"X-Original-URL: {BASE}/collections/seed", f"X-Rewrite-URL: {tp.C}/delete"]
    attack(tp, request(tp, "POST", tp.C + "/get", headers, {"ids": ["a"]}), lambda got: got in ([200], [400], [403]))


# --- duplicate headers ---------------------------------------------------------------------------

@pytest.mark.parametrize("first,second,route", [
    ("reader", "admin", "add"), ("garbage", "admin", "add"), ("admin", "reader", "add"),
    ("reader", "admin", "delete_collection"), ("garbage", "admin", "list"), ("admin", "garbage", "list")])
def test_two_authorization_headers(tp, first, second, route):
    """Credential confusion: never more than the weakest credential present allows (400 or 403)."""
    token = {"reader": tp.reader, "admin": tp.admin, "garbage": "G" * 40}
    method, target, body = {"add": ("POST", tp.C + "/add", EVIL), "list": ("GET", BASE + "/collections", None),
                            "delete_collection": ("DELETE", f"{BASE}/collections/seed", None)}[route]
    data = request(tp, method, target, [bearer(token[first]), bearer(token[second])], body)
    attack(tp, data, lambda got: got in ([400], [403]))


@pytest.fixture(scope="module")
def xp(factory):
    """A project whose clients send X-Chroma-Token, which nginx does not refuse twice."""
    p = factory("--token-header", "X-Chroma-Token")
    return _up(p, add_user(p, "rita", "reader"), admin_secret(p), f"X-Chroma-Token: {admin_secret(p)}")


@pytest.mark.parametrize("first,second", [("reader", "admin"), ("garbage", "admin"), ("garbage", "reader")])
def test_two_x_chroma_token_headers(xp, first, second):
    """Credential confusion on the custom header: nginx reads the first (1.22) or both joined by
    a comma (1.23+); either way a write is judged on the weaker or on no credential."""
    token = {"reader": xp.reader, "admin": xp.admin, "garbage": "G" * 40}
    data = request(xp, "POST", xp.C + "/add", [f"X-Chroma-Token: {token[first]}", f"X-Chroma-Token: {token[second]}"],
                   EVIL)
    attack(xp, data, lambda got: got in ([400], [403]))


def test_two_host_headers(tp):
    """Host confusion: a second Host header makes the request malformed (400)."""
    attack(tp, request(tp, "POST", tp.C + "/add", [bearer(tp.reader), "Host: chroma:8000"], EVIL), [400])


# --- request smuggling, pipelining, absolute-form --------------------------------------------------

def _hidden(tp, kind: str) -> str:
    if kind == "delete":  # admin-only
        return f"DELETE {BASE}/collections/seed HTTP/1.1\r\nHost: chroma\r\nContent-Length: 0\r\n\r\n"
    body = json.dumps(EVIL)
    return (f"POST {tp.C}/add HTTP/1.1\r\nHost: chroma\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n{body}")


def _chunk(text: str) -> str:
    return f"{len(text):x}\r\n{text}\r\n"


SHAPES = {  # name -> (framing headers, body) for the visible JSON v and the hidden request h; {n}: body length
    "CL.TE": lambda v, h: (["Content-Length: {n}", "Transfer-Encoding: chunked"], _chunk(v) + "0\r\n\r\n" + h),
    "TE.CL": lambda v, h: ([f"Content-Length: {len(_chunk(v))}", "Transfer-Encoding: chunked"],
                           _chunk(v) + _chunk(h) + "0\r\n\r\n"),
    "TE-chunked-chunked": lambda v, h: (["Content-Length: {n}", "Transfer-Encoding: chunked, chunked"],
                                        _chunk(v) + "0\r\n\r\n" + h),
    "TE-space-colon": lambda v, h: (["Content-Length: {n}", "Transfer-Encoding : chunked"],
                                    _chunk(v) + "0\r\n\r\n" + h),
    "TE-xchunked": lambda v, h: (["Content-Length: {n}", "Transfer-Encoding: xchunked"], _chunk(v) + "0\r\n\r\n" + h),
    "TE-only-trailing-request": lambda v, h: (["Transfer-Encoding: chunked"], _chunk(v) + "0\r\n\r\n" + h),
}


@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("visible,hidden", [("get", "delete"), ("add", "add")])
def test_smuggled_request_is_never_executed(tp, shape, visible, hidden):
    """Request smuggling (CL.TE, TE.CL, obfuscated Transfer-Encoding): the request hidden in
    the body never reaches Chroma; the visible one gets at most what the reader's role allows."""
    framing, body = SHAPES[shape](json.dumps({"ids": ["a"]} if visible == "get" else EVIL), _hidden(tp, hidden))
    head = [f"POST {tp.C}/{visible} HTTP/1.1", f"Host: 127.0.0.1:{tp.port}", bearer(tp.reader),
            "Content-Type: application/json", *[f.replace("{n}", str(len(body))) for f in framing], "Connection: close"]
    allowed = {200, 400, 501} if visible == "get" else {400, 403, 501}  # 501: nginx's answer to an unknown coding
    attack(tp, ("\r\n".join(head) + "\r\n\r\n" + body).encode(),
           lambda got: len(got) >= 1 and got[0] in allowed and all(s >= 300 for s in got[1:]), timeout=3)
    time.sleep(0.2)  # a request desynchronised onto an upstream connection would have run by now
    assert snapshot(tp) == tp.baseline


def test_pipelined_forbidden_request_is_judged_on_its_own(tp):
    """Pipelining: an allowed GET then a forbidden add in one write get 200, then 403."""
    data = (request(tp, "GET", BASE + "/collections", [bearer(tp.reader)], close=False)
            + request(tp, "POST", tp.C + "/add", [bearer(tp.reader)], EVIL))
    attack(tp, data, [200, 403])


@pytest.mark.parametrize("authority", ["127.0.0.1:{port}", "chroma:8000"])
def test_absolute_form_target(tp, authority):
    """Absolute-form request target (proxy style): the reader's add stays forbidden."""
    target = f"http://{authority.format(port=tp.port)}{tp.C}/add"
    attack(tp, request(tp, "POST", target, [bearer(tp.reader)], EVIL), lambda got: got in ([400], [403]))


def test_idle_connections_do_not_starve_the_gateway(tp):
    """Slowloris-style exhaustion: with 300 idle connections open, a heartbeat still answers in 5 s."""
    idle = []
    try:
        for _ in range(300):
            idle.append(socket.create_connection(("127.0.0.1", tp.port), timeout=5))
        started = time.monotonic()
        got = statuses(tp, request(tp, "GET", "/api/v2/heartbeat"), timeout=5)
        assert got == [200] and time.monotonic() - started < 5, (got, time.monotonic() - started)
    finally:
        for s in idle:
            s.close()


# --- bypassing the gateway: Chroma's own port ------------------------------------------------------

PROBE = r'''
import json, socket, sys
def probe(host, port, path):
    try:
        s = socket.create_connection((host, port), timeout=3)
    except socket.gaierror:
        return "unresolved"
    except ConnectionRefusedError:
        return "refused"
    except OSError as exc:
        return "unreachable: %s" % exc
    with s:
        s.sendall(("GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % path).encode())
        s.settimeout(5)
        data = s.recv(65536)
    return "http " + (data.split(b" ")[1].decode() if data.startswith(b"HTTP/") else repr(data[:20]))
print(json.dumps([probe(*t) for t in json.loads(sys.argv[1])]))
'''


def _ips(container, only: str | None = None) -> list[str]:
    networks = container.attrs["NetworkSettings"]["Networks"]
    return [n["IPAddress"] for name, n in networks.items() if n.get("IPAddress") and (only is None or name == only)]


def _targets(tp, docker_client, names: bool = False):
    """The gateway, and (host, port, expected) to probe: the gateway's addresses (Chroma's
    port closed, its own answering 403), and Chroma's internal address, which nothing but
    the gateway may reach (probed only behind the `blackhole` route, see below)."""
    gateway, chroma = docker_client.containers.get(tp.gateway), docker_client.containers.get(tp.container)
    outside = _ips(gateway, f"chromactl-{tp.name}")
    assert outside, gateway.attrs["NetworkSettings"]["Networks"]
    targets = [t for ip in outside for t in ((ip, 8000, "no connection"), (ip, 8080, "http 403"))]
    targets += [(ip, port, "no connection") for ip in _ips(chroma) + _ips(gateway, f"chromactl-{tp.name}-internal")
                for port in (8000, 8080)]
    if names:  # the names a neighbour on the project's network could resolve
        targets += [(tp.container, 8000, "no connection"), (tp.gateway, 8000, "no connection")]
    return gateway, targets


def _judge(targets, output) -> None:
    closed = ("refused", "unresolved", "unreachable")
    bad = [(host, port, want, got) for (host, port, want), got in zip(targets, json.loads(output))
           if not (got.startswith(closed) if want == "no connection" else got == want)]
    assert not bad, "(host, port, expected, observed): " + repr(bad)


def _argument(targets) -> str:
    return json.dumps([(host, port, BASE + "/collections") for host, port, _ in targets])


def _internal(tp, docker_client):
    network = docker_client.networks.get(f"chromactl-{tp.name}-internal")
    return network, network.attrs["IPAM"]["Config"][0]["Subnet"], "br-" + network.id[:12]


def test_the_host_has_no_way_into_chromas_network(tp, docker_client):
    """Proven from interface and route facts, without sending a packet there (a packet to an
    address the host has no route for would leave the machine by its default route): the
    internal network's bridge has no IPv4 address on the host, so the host has no route
    into it; the network is internal (no way out either); only Chroma and the gateway are on it."""
    network, subnet, bridge = _internal(tp, docker_client)
    assert network.attrs["Internal"] is True
    assert network.attrs["Options"].get("com.docker.network.bridge.inhibit_ipv4") == "true"
    addresses = subprocess.run(["ip", "-4", "-o", "addr", "show", "dev", bridge], capture_output=True, text=True)
    assert addresses.returncode == 0 and addresses.stdout.strip() == "", addresses.stdout  # no host address
    chroma_ip = _ips(docker_client.containers.get(tp.container))[0]
    route = subprocess.run(["ip", "route", "get", chroma_ip], capture_output=True, text=True).stdout
    assert f"dev {bridge}" not in route, route  # not routed into the bridge
    listed = subprocess.run(["ip", "-4", "route", "show"], capture_output=True, text=True).stdout
    assert subnet not in listed and bridge not in listed, listed
    assert {c["Name"] for c in network.attrs["Containers"].values()} == {tp.container, tp.gateway}


@pytest.fixture
def blackhole(tp, docker_client):
    """A local `unreachable` route for the internal subnet while a probe runs: a packet meant
    for it is refused on this machine instead of leaving by the default route. (The bridge
    switches Chroma's and the gateway's traffic itself; the host's routes play no part in it.)"""
    _, subnet, _ = _internal(tp, docker_client)
    subprocess.run(["ip", "route", "add", "unreachable", subnet], check=True)
    try:
        yield subnet
    finally:
        subprocess.run(["ip", "route", "del", "unreachable", subnet], check=True)


@pytest.mark.parametrize("user", ["root", "nobody"])
def test_chroma_port_is_closed_from_the_host(tp, docker_client, blackhole, user):
    """Gateway bypass from the host, as root and as an unprivileged local user (uid 65534):
    Chroma's port is closed on the gateway's addresses, and Chroma's own address is out of reach."""
    _, targets = _targets(tp, docker_client)
    become = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] if user == "nobody" else []
    done = subprocess.run([*become, "/usr/bin/python3", "-c", PROBE, _argument(targets)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    _judge(targets, done.stdout)


def test_chroma_port_is_closed_from_a_neighbouring_container(tp, docker_client, blackhole):
    """Gateway bypass from another container on the project's network and on the default
    bridge (the internal network takes no one else: `up` refuses a stranger on it)."""
    gateway, targets = _targets(tp, docker_client, names=True)
    neighbour = docker_client.containers.run(IMAGE_063, entrypoint=["sleep", "120"], detach=True,
                                             network=f"chromactl-{tp.name}", name=f"{tp.container}-neighbour",
                                             labels={LABEL: str(tp.folder)})
    try:
        docker_client.networks.get("bridge").connect(neighbour)
        code, output = neighbour.exec_run(["python3", "-c", PROBE, _argument(targets)])
        assert code == 0, output
        _judge(targets, output)
    finally:
        neighbour.remove(force=True)


# --- basic auth: no oracle for user names or roles -------------------------------------------------

def _route(p, route: str):
    return ("GET", BASE + "/collections", None) if route == "read" else ("POST", p.C + "/add", EVIL)


@pytest.mark.parametrize("route", ["read", "write"])
def test_basic_unknown_user_and_wrong_password_look_alike(bp, route):
    """User enumeration: an unknown user and known ones with a wrong password get the same 401."""
    method, target, body = _route(bp, route)
    before = snapshot(bp)
    seen = {who: raw(bp.port, request(bp, method, target, [basic(who, "wrong-password")], body))[0]
            for who in ("nobody", "rita", "admin")}
    seen = {who: (r.status, r.body, "www-authenticate" in r.headers) for who, r in seen.items()}
    intact(bp, before, len(set(seen.values())) == 1 and seen["nobody"][::2] == (401, True),
           {who: s[::2] for who, s in seen.items()})


def test_basic_wrong_password_does_not_reveal_the_role(bp):
    """Role oracle: the reader's name with a wrong password on a write route gets 401, not 403."""
    method, target, body = _route(bp, "write")
    attack(bp, request(bp, method, target, [basic("rita", "wrong-password")], body), [401])


def test_basic_reader_with_its_password_may_not_write(bp):
    """Control: the reader, correctly authenticated, is refused a write (403) and allowed a read."""
    before = snapshot(bp)
    write = statuses(bp, request(bp, *_route(bp, "write")[:2], [basic("rita", bp.reader)], EVIL))
    read = statuses(bp, request(bp, *_route(bp, "read")[:2], [basic("rita", bp.reader)]))
    intact(bp, before, (write, read) == ([403], [200]), (write, read))


# --- role names that would reach nginx.conf -----------------------------------------------------

ROLES = {"variable": "$http_x_role", "quote-directive": 'reader"; deny all; #', "brace-open": "re{ader",
         "brace-close": "re}ader", "semicolon": "re;ader", "space": "re ader", "newline": "re\nader"}


@pytest.mark.parametrize("role", list(ROLES.values()), ids=list(ROLES))
def test_role_name_that_is_not_a_plain_word_is_refused(factory, docker_client, role):
    """Config injection: a hand-edited roles_mapping role (given to rita, with the reader's
    actions) never reaches nginx.conf: `up` refuses it (exit 1, naming authz.yaml and the
    line) and starts nothing. Modelled on a throwaway project, init'ed but never up."""
    p = factory()
    add_user(p, "rita", "reader")
    authz = p.folder / "authz.yaml"
    lines = authz.read_text().splitlines()
    at = lines.index("roles_mapping:") + 1
    lines[at:at] = [f"  {json.dumps(role)}:", "    actions:", *[f"    - {a}" for a in READER]]
    user = lines.index("- id: rita") + 1
    assert lines[user] == "  role: reader", lines[user]
    lines[user] = f"  role: {json.dumps(role)}"
    authz.write_text("\n".join(lines) + "\n")
    try:
        result = p("up", "--json", "--timeout", "30")
        message = document(result, "up")["error"]["message"]  # under --json the error is the document
        where = [int(n) for n in re.findall(r"authz\.yaml:(\d+)", message)]
        started = [c.name for c in docker_client.containers.list(all=True, filters={"label": f"{LABEL}={p.folder}"})]
        assert result.returncode == 1 and where[:1] in ([at + 1], [user + 1]) and not started, \
            f"exit {result.returncode}, started {started}, lines {where} (want {at + 1} or {user + 1}): {message}"
    finally:
        factory.discard(p)


def test_hostile_token_passes_nginx_t_and_grants_only_its_own_role(factory, docker_client):
    """Config injection through a token: punctuation Chroma accepts in tokens (quotes, braces,
    `;`, `$`, `#`, backslashes) is written as hex escapes, so nginx -t accepts the file, the token
    matches exactly, and nothing it spells out (a variable, a directive) takes effect."""
    hostile = '$http_x_role";}{ allow all; #\\\'`'.replace(" ", "_") + "Zz9"
    p = factory()
    add_user(p, "rita", "reader", stdin=hostile + "\n", flag="--token-stdin")
    reader_token = hostile
    _up(p, reader_token, admin_secret(p), bearer(admin_secret(p)))
    try:
        checked = docker_client.containers.get(p.gateway).exec_run(
            ["nginx", "-t", "-e", "stderr", "-c", "/etc/chromactl-gateway/nginx.conf"])
        assert checked.exit_code == 0, checked.output
        allowed = statuses(p, request(p, "GET", BASE + "/collections", [bearer(hostile)]))
        denied = statuses(p, request(p, "POST", p.C + "/add", [bearer(hostile), "X-Role: admin"], EVIL))
        near = statuses(p, request(p, "GET", BASE + "/collections", [bearer(hostile[:-1])]))
        assert (allowed, denied, near) == ([200], [403], [403]), (allowed, denied, near)
    finally:
        factory.discard(p)


def test_basic_forty_wrong_passwords_lock_nobody_out(bp):
    """Lockout as a denial of service: 40 wrong passwords for the reader, then the reader's own
    password still reads (there is no lockout to trip, and none is wanted: a stranger could
    lock out anyone whose name it knows)."""
    method, target, _ = _route(bp, "read")
    wrong = [statuses(bp, request(bp, method, target, [basic("rita", f"wrong-{i}")]))[0] for i in range(40)]
    assert set(wrong) == {401}, wrong
    assert statuses(bp, request(bp, method, target, [basic("rita", bp.reader)])) == [200]
