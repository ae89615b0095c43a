"""Benchmark what authentication costs on the request path, every mode side by side in one run.

Servers, each set up through chromactl itself (`init ... --json`, then `up --json`), on loopback:

  - Chroma 0.6.3 with its own auth code (chromactl-test/chroma:0.6.3, `--gateway none`);
  - Chroma 1.5.9 behind chromactl's nginx gateway (chromactl-test/chroma:1.5.9,
    `--gateway-image chromactl-test/nginx:bookworm`).

Modes, each a project of its own: open (`--auth none --gateway none`: Chroma published directly,
the "direct access" baseline), token (the default: token auth + RBAC, `Authorization: Bearer`)
and basic (`--auth basic` + RBAC, the generated admin password). bcrypt cost is chromactl's default
(CHROMACTL_BCRYPT_ROUNDS is never set): the point is to measure the defaults; the output names
the cost of the admin's hash, on which the basic figures depend.

1. Request path. The request is the admin's collection count,
   GET /api/v2/tenants/default_tenant/databases/default_database/collections_count (first response
   must be 200). Load: one OS process per connection (multiprocessing, so the GIL stays out of the
   figures), 1 and 4 concurrent keep-alive connections (http.client), 0.5 s warm-up, then a fixed
   window; req/s = requests completed in the window / window, p50 over every request's latency
   (a connection the server closes, as nginx does after 1000 requests, is reopened and counted).
   Each round runs every (server, mode, connections) once, in an order rotated from round to round;
   the tables show medians across rounds (ratios are ratios of those medians). Also printed: the
   gateway's token overhead against direct open access at 4 connections.
2. Failed attempts, on each basic project: 4 connections sending a wrong password (then, separately,
   an unknown user) for the window; attempts/s, server-side CPU per attempt (the container that
   checks the password: the gateway for 1.5.9, Chroma for 0.6.3; Docker's cpu_usage.total_usage
   before and after, over every attempt sent, warm-up included, less the heartbeats sent meanwhile
   at what one costs when idle), and the p50 of the public heartbeat (sequential, on its own
   connection, one every 50 ms at most) during the attack against idle.

Run (needs the Docker engine and the images ci/chroma-images.sh builds, i.e. after `scripts/test`
once), from the checkout:

    .venv/bin/python bench/request_path.py [--rounds N] [--seconds S] [--json]

Defaults: 3 rounds of 4 s windows, about 4 minutes on a 2-core machine. Progress goes to stderr,
the tables to stdout (with --json, stdout is one JSON document and the tables go to stderr).
Every project is removed at the end (`chromactl down --volumes --yes`); traffic stays on 127.0.0.1.
Figures from a shared 2-core machine are noisy: the load processes compete with the servers for
the same cores, and other work on the machine moves the numbers from run to run.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import multiprocessing
import os
import re
import secrets
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HOST = "127.0.0.1"
COUNT_PATH = "/api/v2/tenants/default_tenant/databases/default_database/collections_count"
HEARTBEAT_PATH = "/api/v2/heartbeat"
IMAGE_063 = "chromactl-test/chroma:0.6.3"
IMAGE_159 = "chromactl-test/chroma:1.5.9"
NGINX_IMAGE = "chromactl-test/nginx:bookworm"
WARMUP = 0.5          # s of load before the measured window
START_SLACK = 0.3     # s between handing out the tasks and the start of the warm-up
REQUEST_TIMEOUT = 15  # s, per request: a stuck server cannot hold the run
HEARTBEAT_EVERY = 0.05  # s between heartbeats: enough samples, little CPU taken from the attack's figure
IDLE_SECONDS = 2.0
MAX_CONNS = 4
MODES = ("open", "token", "basic")
CONNS = (1, 4)
SERVERS = {
    "0.6.3": {"label": "chroma 0.6.3, native auth", "image": IMAGE_063,
              "init": {"open": ["--auth", "none", "--gateway", "none"],
                       "token": ["--gateway", "none"],
                       "basic": ["--auth", "basic", "--gateway", "none"]}},
    "1.5.9": {"label": "chroma 1.5.9 + nginx gateway", "image": IMAGE_159,
              "init": {"open": ["--auth", "none", "--gateway", "none"],
                       "token": ["--gateway-image", NGINX_IMAGE],
                       "basic": ["--auth", "basic", "--gateway-image", NGINX_IMAGE]}},
}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- load generation: runs in the worker processes -------------------------------------------


def _request(conn: http.client.HTTPConnection, path: str, headers: dict) -> int:
    conn.request("GET", path, headers=headers)
    response = conn.getresponse()
    response.read()
    return response.status


def connection(task: dict) -> http.client.HTTPConnection:
    """A plain or, when the task names a CA (bench/tls_cost.py), a verified TLS connection, not
    yet connected. The TLS context is made once per process and kept in the task."""
    if task.get("ca"):
        context = task.get("_context")
        if context is None:
            context = task["_context"] = ssl.create_default_context(cafile=task["ca"])
        return http.client.HTTPSConnection(HOST, task["port"], timeout=REQUEST_TIMEOUT, context=context)
    return http.client.HTTPConnection(HOST, task["port"], timeout=REQUEST_TIMEOUT)


def load_worker(task: dict) -> dict:
    """One keep-alive connection: a checked first request, load until the window opens, then
    every request completed inside [t0, t1] counts. Clocks: time.monotonic, system-wide on Linux."""
    t0 = task["start_at"] + task["warmup"]
    t1 = t0 + task["seconds"]
    task = dict(task)
    conn = connection(task)  # a CA is read here, before the window
    if time.monotonic() >= t0:
        raise RuntimeError("a load process started after the measured window opened (machine overloaded?)")
    status = _request(conn, task["path"], task["headers"])
    if status not in task["expect"]:
        raise RuntimeError(f"{task['what']}: first response was {status}, expected {sorted(task['expect'])}")
    latencies: list[float] = []
    statuses: dict[int, int] = {}  # answers inside the window, by status
    total, bad, errors, reconnects = 1, 0, 0, 0
    while True:
        started = time.monotonic()
        if started >= t1:
            break
        if conn.sock is None:  # the server closed the connection: http.client opens a new one
            reconnects += 1
        try:
            status = _request(conn, task["path"], task["headers"])
        except (OSError, http.client.HTTPException):
            conn.close()
            errors += 1
            time.sleep(0.01)
            continue
        ended = time.monotonic()
        total += 1
        if t0 <= ended <= t1:
            statuses[status] = statuses.get(status, 0) + 1
            if status in task["expect"]:
                latencies.append(ended - started)
            else:
                bad += 1
    conn.close()
    return {"latencies": latencies, "statuses": statuses, "total": total, "bad": bad, "errors": errors,
            "reconnects": reconnects}


def _ready(_: int) -> int:
    time.sleep(0.2)
    return os.getpid()


# --- projects, through chromactl ---------------------------------------------------------------


@dataclass
class Project:
    server: str
    mode: str
    folder: Path
    name: str
    port: int
    secret: str | None = None
    bcrypt_cost: int | None = None  # of the admin's hash, basic auth only
    cpu_container: str = ""
    headers: dict = field(default_factory=dict)


def clean_env() -> dict:
    return {k: v for k, v in os.environ.items() if not k.startswith("CHROMACTL_")}


def chromactl(folder: Path, *args: str, check: bool = True, timeout: float = 180) -> subprocess.CompletedProcess:
    try:
        result = subprocess.run([sys.executable, "-m", "chromactl", *args], cwd=folder, capture_output=True,
                                text=True, stdin=subprocess.DEVNULL, env=clean_env(), timeout=timeout)
    except subprocess.TimeoutExpired:
        raise SystemExit(f"chromactl {' '.join(args)} in {folder}: no answer within {timeout} s")
    if check and result.returncode != 0:
        raise SystemExit(f"chromactl {' '.join(args)} in {folder} failed (exit {result.returncode}):\n"
                         f"{result.stdout}{result.stderr}")
    return result


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def basic_header(user: str, password: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def create_project(base: Path, server: str, mode: str, made: list[Project]) -> Project:
    name = "rp" + secrets.token_hex(4)
    folder = base / name
    folder.mkdir()
    project = Project(server, mode, folder, name, free_port())
    made.append(project)  # before init: whatever happens next, cleanup visits the folder
    init = chromactl(folder, "init", "--name", name, "--image", SERVERS[server]["image"], "--host", HOST,
                     "--port", str(project.port), *SERVERS[server]["init"][mode], "--json", timeout=120)
    project.secret = json.loads(init.stdout)["secret"]
    up = json.loads(chromactl(folder, "up", "--json").stdout)
    gateway = up.get("gateway")
    if (gateway is not None) != (server == "1.5.9" and mode != "open"):
        raise SystemExit(f"{server} {mode}: unexpected gateway in `up --json`: {gateway!r}")
    expected_mode = "none" if mode == "open" else mode
    if up["auth"]["mode"] != expected_mode or up["auth"]["enforced"] != (mode != "open"):
        raise SystemExit(f"{server} {mode}: unexpected auth in `up --json`: {up['auth']!r}")
    project.cpu_container = gateway["container"] if gateway else up["container"]
    if mode == "token":
        project.headers = {"Authorization": f"Bearer {project.secret}"}
    elif mode == "basic":
        project.headers = basic_header("admin", project.secret)
        # The figures depend on it: the cost chromactl chose by default for the generated password.
        found = re.search(r"^admin:\$2[aby]\$(\d\d)\$", (folder / "server.htpasswd").read_text(), re.M)
        project.bcrypt_cost = int(found[1]) if found else None
    return project


def check_first_request(project: Project) -> None:
    conn = http.client.HTTPConnection(HOST, project.port, timeout=REQUEST_TIMEOUT)
    try:
        conn.request("GET", COUNT_PATH, headers=project.headers)
        response = conn.getresponse()
        body = response.read()[:300]
    finally:
        conn.close()
    if response.status != 200:
        raise SystemExit(f"{project.server} {project.mode}: collections_count answered {response.status}, "
                         f"not 200: {body!r}")


# --- measuring ---------------------------------------------------------------------------------


def run_load(pool, project: Project, conns: int, seconds: float, headers: dict, expect: set[int], what: str,
             during=None, ca: str | None = None):
    """Start `conns` load processes on the project (over TLS trusting `ca`, if given);
    `during(result)` runs in this process meanwhile."""
    task = {"port": project.port, "path": COUNT_PATH, "headers": headers, "expect": expect, "what": what,
            "start_at": time.monotonic() + START_SLACK, "warmup": WARMUP, "seconds": seconds, "ca": ca}
    pending = pool.map_async(load_worker, [task] * conns, chunksize=1)
    side = during(pending) if during else None
    try:
        results = pending.get(timeout=START_SLACK + WARMUP + seconds + 2 * REQUEST_TIMEOUT + 10)
    except multiprocessing.TimeoutError:
        raise SystemExit(f"{what}: the load processes did not finish in time")
    except Exception as exc:  # a load process failed: its first answer, or the connection itself
        raise SystemExit(f"{what}: {type(exc).__name__}: {exc}")
    latencies = [x for r in results for x in r["latencies"]]
    statuses: dict[str, int] = {}
    for r in results:
        for status, count in r["statuses"].items():
            statuses[str(status)] = statuses.get(str(status), 0) + count
    figures = {
        "req_per_s": len(latencies) / seconds,
        "p50_ms": statistics.median(latencies) * 1000 if latencies else None,
        "requests": len(latencies),
        "attempts_total": sum(r["total"] for r in results),  # warm-up and tail included
        "bad_status": sum(r["bad"] for r in results),
        "errors": sum(r["errors"] for r in results),
        "reconnects": sum(r["reconnects"] for r in results),
        "statuses": dict(sorted(statuses.items())),
    }
    return figures, side


def heartbeats(port: int, stop) -> list[float]:
    """Sequential public heartbeats on one connection, one every HEARTBEAT_EVERY at most, until
    stop() says so; latencies in ms."""
    latencies = []
    conn = http.client.HTTPConnection(HOST, port, timeout=REQUEST_TIMEOUT)
    next_at = time.monotonic()
    try:
        while not stop():
            pause = next_at - time.monotonic()
            if pause > 0:
                time.sleep(pause)
                continue  # look at stop() again
            started = time.monotonic()
            next_at = started + HEARTBEAT_EVERY
            try:
                status = _request(conn, HEARTBEAT_PATH, {})
            except (OSError, http.client.HTTPException):
                conn.close()
                time.sleep(0.01)
                continue
            if status == 200:
                latencies.append((time.monotonic() - started) * 1000)
    finally:
        conn.close()
    return latencies


def cpu_ns(client, container: str) -> int:
    return client.containers.get(container).stats(stream=False)["cpu_stats"]["cpu_usage"]["total_usage"]


def median_or_none(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def ratio(a, b):
    return a / b if a is not None and b else None


def fmt(value, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


# --- the run -----------------------------------------------------------------------------------


def docker_with_images():
    """A Docker client, once the engine answers and the test images are there."""
    import docker  # here, not at the top: the spawned load processes do not need it

    try:
        client = docker.from_env()
        client.ping()
    except Exception as exc:
        raise SystemExit(f"the Docker engine does not answer: {exc}")
    for image in (IMAGE_063, IMAGE_159, NGINX_IMAGE):
        try:
            client.images.get(image)
        except docker.errors.ImageNotFound:
            raise SystemExit(f"image {image} is missing: ci/chroma-images.sh builds it (run scripts/test once)")
    return client


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the request-path load (default 3)")
    parser.add_argument("--seconds", type=float, default=4.0, help="measured window of each load (default 4)")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON document")
    options = parser.parse_args()
    if not 1 <= options.rounds <= 50:
        parser.error("--rounds must be between 1 and 50")
    if not 0.5 <= options.seconds <= 120:
        parser.error("--seconds must be between 0.5 and 120")
    if "CHROMACTL_BCRYPT_ROUNDS" in os.environ:
        log("note: CHROMACTL_BCRYPT_ROUNDS is ignored: projects use chromactl's default bcrypt cost")

    client = docker_with_images()

    cells = [(server, conns, mode) for server in SERVERS for conns in CONNS for mode in MODES]
    cell_time = START_SLACK + WARMUP + options.seconds + 0.3
    attack_time = 2 * 2 * (3 * 1.1 + min(IDLE_SECONDS, options.seconds) + cell_time)  # stats: ~1 s each
    log(f"request_path: {len(cells)} loads x {options.rounds} rounds of {options.seconds:g} s, then "
        f"4 attacks; expect about {30 + options.rounds * len(cells) * cell_time + attack_time + 20:.0f} s")

    base = Path(tempfile.mkdtemp(prefix="chromactl-request-path-"))
    made: list[Project] = []
    pool = None
    try:
        pool = multiprocessing.get_context("spawn").Pool(MAX_CONNS)
        pool.map(_ready, range(MAX_CONNS), chunksize=1)  # every load process imported and waiting

        projects: dict[tuple[str, str], Project] = {}
        for server in SERVERS:
            for mode in MODES:
                started = time.monotonic()
                project = create_project(base, server, mode, made)
                check_first_request(project)
                projects[server, mode] = project
                cost = f", admin bcrypt cost {project.bcrypt_cost}" if mode == "basic" else ""
                log(f"  up: {server} {mode} on :{project.port} ({time.monotonic() - started:.1f} s{cost})")

        # 1. The request path, alternating every cell within each round.
        per_round: dict[tuple[str, int, str], list[dict]] = {cell: [] for cell in cells}
        step = max(1, len(cells) // options.rounds)
        for r in range(options.rounds):
            shift = (r * step) % len(cells)
            order = cells[shift:] + cells[:shift]
            log(f"round {r + 1}/{options.rounds}")
            for server, conns, mode in order:
                project = projects[server, mode]
                figures, _ = run_load(pool, project, conns, options.seconds, project.headers, {200},
                                      f"{server} {mode} x{conns}")
                per_round[server, conns, mode].append(figures)
                trouble = ""
                if figures["bad_status"] or figures["errors"] or figures["reconnects"]:
                    trouble = (f"  (answers {figures['statuses']}, {figures['errors']} connection errors, "
                               f"{figures['reconnects']} reconnects)")
                log(f"  {server:5} {mode:5} x{conns}: {figures['req_per_s']:8.1f} req/s, "
                    f"p50 {fmt(figures['p50_ms'], 2)} ms{trouble}")

        load = []
        for (server, conns, mode), rounds in per_round.items():
            load.append({"server": server, "mode": mode, "conns": conns,
                         "median_req_per_s": statistics.median(f["req_per_s"] for f in rounds),
                         "median_p50_ms": median_or_none(f["p50_ms"] for f in rounds),
                         "rounds": rounds})
        med = {(x["server"], x["conns"], x["mode"]): x for x in load}

        rows = []
        for server in SERVERS:
            for conns in CONNS:
                rps = {mode: med[server, conns, mode]["median_req_per_s"] for mode in MODES}
                p50 = {mode: med[server, conns, mode]["median_p50_ms"] for mode in MODES}
                rows.append({"server": server, "conns": conns, "req_per_s": rps, "p50_ms": p50,
                             "basic_over_token": ratio(rps["basic"], rps["token"]),
                             "token_over_open": ratio(rps["token"], rps["open"])})
        overhead = {}
        for server in SERVERS:
            open_, token = med[server, 4, "open"], med[server, 4, "token"]
            overhead[server] = {
                "open_over_token_req_per_s": ratio(open_["median_req_per_s"], token["median_req_per_s"]),
                "token_over_open_p50": ratio(token["median_p50_ms"], open_["median_p50_ms"]),
            }

        # 2. Failed attempts on the basic projects.
        attacks = []
        for server in SERVERS:
            project = projects[server, "basic"]
            kinds = (("wrong password", basic_header("admin", secrets.token_urlsafe(18))),
                     ("unknown user", basic_header("nobody" + secrets.token_hex(4), secrets.token_urlsafe(18))))
            for kind, headers in kinds:
                log(f"attack: {server} basic, {kind}, {MAX_CONNS} connections")
                idle_start = cpu_ns(client, project.cpu_container)
                idle_until = time.monotonic() + min(IDLE_SECONDS, options.seconds)
                idle = heartbeats(project.port, lambda: time.monotonic() >= idle_until)
                before = cpu_ns(client, project.cpu_container)
                # What a heartbeat costs that container when idle (its idle background included),
                # taken off the attack's CPU for the heartbeats sent during it.
                heartbeat_ms = ratio((before - idle_start) / 1e6, len(idle)) or 0.0
                hard_stop = time.monotonic() + START_SLACK + WARMUP + options.seconds + 2 * REQUEST_TIMEOUT

                def during(pending, port=project.port, hard_stop=hard_stop):
                    return heartbeats(port, lambda: pending.ready() or time.monotonic() >= hard_stop)

                # 429: the gateway's rate limit on costly hashes (if any) answering before bcrypt.
                figures, under = run_load(pool, project, MAX_CONNS, options.seconds, headers, {401, 403, 429},
                                          f"{server} basic {kind}", during=during)
                after = cpu_ns(client, project.cpu_container)
                cpu_ms = (after - before) / 1e6
                attack_cpu_ms = max(0.0, cpu_ms - heartbeat_ms * len(under))
                attacks.append({
                    "server": server, "attack": kind, "conns": MAX_CONNS, "cpu_container": project.cpu_container,
                    "bcrypt_cost": project.bcrypt_cost, "statuses": figures["statuses"],
                    "attempts_per_s": figures["req_per_s"],
                    "attempt_p50_ms": figures["p50_ms"],
                    "attempts_total": figures["attempts_total"],
                    "cpu_ms_total": cpu_ms, "cpu_ms_per_idle_heartbeat": heartbeat_ms,
                    "cpu_ms_per_attempt": ratio(attack_cpu_ms, figures["attempts_total"]),
                    "cpu_ms_per_attempt_uncorrected": ratio(cpu_ms, figures["attempts_total"]),
                    "heartbeat_p50_ms_idle": median_or_none(idle), "heartbeats_idle": len(idle),
                    "heartbeat_p50_ms_attack": median_or_none(under), "heartbeats_attack": len(under),
                    "errors": figures["errors"], "reconnects": figures["reconnects"],
                    "unexpected_status": figures["bad_status"],
                })
                a = attacks[-1]
                log(f"  {a['attempts_per_s']:.1f} attempts/s (answers {a['statuses']}), "
                    f"{fmt(a['cpu_ms_per_attempt'], 2)} ms CPU/attempt, heartbeat p50 "
                    f"{fmt(a['heartbeat_p50_ms_idle'], 2)} -> {fmt(a['heartbeat_p50_ms_attack'], 2)} ms")
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
        for project in made:
            result = chromactl(project.folder, "down", "--volumes", "--yes", check=False, timeout=120)
            if result.returncode != 0:
                log(f"cleanup: `chromactl down` in {project.folder} failed: {result.stderr.strip()}")
        shutil.rmtree(base, ignore_errors=True)
        if made:
            log(f"cleanup: {len(made)} projects removed")

    # Report.
    lines = [f"rounds: {options.rounds}, window: {options.seconds:g} s after {WARMUP:g} s warm-up, "
             f"request: GET {COUNT_PATH} as admin; medians across rounds",
             "admin bcrypt cost (chromactl's default for a generated password): "
             + ", ".join(f"{s} {projects[s, 'basic'].bcrypt_cost}" for s in SERVERS), "",
             "| server | conns | open req/s | token req/s | basic req/s | basic/token | p50 ms open/token/basic |",
             "| --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    for row in rows:
        rps, p50 = row["req_per_s"], row["p50_ms"]
        lines.append(f"| {SERVERS[row['server']]['label']} | {row['conns']} | {fmt(rps['open'])} | "
                     f"{fmt(rps['token'])} | {fmt(rps['basic'])} | {fmt(row['basic_over_token'], 4)} | "
                     f"{fmt(p50['open'], 2)} / {fmt(p50['token'], 2)} / {fmt(p50['basic'], 2)} |")
    lines.append("")
    g, n = overhead["1.5.9"], overhead["0.6.3"]
    lines.append(f"gateway token overhead vs direct open, 4 connections (1.5.9): open/token req/s = "
                 f"{fmt(g['open_over_token_req_per_s'], 2)}, p50 token/open = {fmt(g['token_over_open_p50'], 2)}")
    lines.append(f"(for comparison, 0.6.3 native token vs open, 4 connections: open/token req/s = "
                 f"{fmt(n['open_over_token_req_per_s'], 2)}, p50 token/open = {fmt(n['token_over_open_p50'], 2)})")
    troubled = [x for x in load if any(f["bad_status"] or f["errors"] for f in x["rounds"])]
    for x in troubled:
        lines.append(f"warning: {x['server']} {x['mode']} x{x['conns']}: "
                     f"{sum(f['bad_status'] for f in x['rounds'])} non-200 answers "
                     f"({[f['statuses'] for f in x['rounds']]}), "
                     f"{sum(f['errors'] for f in x['rounds'])} connection errors; they are not counted")
    lines += ["", f"failed attempts, {MAX_CONNS} connections, {options.seconds:g} s each "
              "(CPU: the container checking the password, less the heartbeats' share)", "",
              "| server | attack | attempts/s | server CPU ms/attempt | heartbeat p50 ms idle | "
              "heartbeat p50 ms under attack |",
              "| --- | --- | ---: | ---: | ---: | ---: |"]
    for a in attacks:
        lines.append(f"| {SERVERS[a['server']]['label']} | {a['attack']} | {fmt(a['attempts_per_s'])} | "
                     f"{fmt(a['cpu_ms_per_attempt'], 2)} | {fmt(a['heartbeat_p50_ms_idle'], 2)} | "
                     f"{fmt(a['heartbeat_p50_ms_attack'], 2)} |")
    for a in attacks:
        if a["errors"] or a["unexpected_status"] or "429" in a["statuses"]:
            lines.append(f"note: {a['server']} {a['attack']}: answers {a['statuses']} (429: refused by a rate "
                         f"limit before any bcrypt), {a['errors']} connection errors")
    table = "\n".join(lines)

    if options.json:
        log(table)
        document = {"settings": {"rounds": options.rounds, "seconds": options.seconds, "warmup": WARMUP,
                                 "request": f"GET {COUNT_PATH}", "cpus": os.cpu_count(),
                                 "images": {"0.6.3": IMAGE_063, "1.5.9": IMAGE_159, "gateway": NGINX_IMAGE}},
                    "summary": rows, "gateway_token_overhead_4_conns": overhead["1.5.9"],
                    "native_token_overhead_4_conns": overhead["0.6.3"], "load": load, "failed_attempts": attacks}
        print(json.dumps(document, indent=2))
    else:
        print(table)


if __name__ == "__main__":
    main()
