"""Benchmark what TLS costs, plain HTTP and TLS side by side in one run.

Servers, each project set up through chromactl itself (`init ... --json`, then `up --json`), on
127.0.0.1, token auth (the default, `Authorization: Bearer` with the admin token):

  - Chroma 1.5.9 behind chromactl's nginx gateway (chromactl-test/chroma:1.5.9,
    `--gateway-image chromactl-test/nginx:bookworm`): nginx terminates TLS;
  - Chroma 0.6.3 with its own auth code (chromactl-test/chroma:0.6.3, `--gateway none`): uvicorn
    serves TLS itself.

Each server in two modes: plain (`--tls off`) and TLS (`--tls auto`: the project's own CA and a
server certificate, ECDSA P-256). Clients trust the project's CA (the path `up --json` reports in
["tls"]["ca"]) and check the certificate's name (127.0.0.1 is in it); no session resumption.

1. `chromactl up`, new container to verified server: the time of `python -m chromactl up --json`
   on a fresh project (init is not timed; every project is removed right after with
   `down --volumes --yes`). Each round runs every (server, mode) once, in an order rotated from
   round to round, so plain and TLS alternate. The four projects of measures 2 and 3 are started
   first (untimed, which also warms the images), so every timed `up` sees the same idle servers.
2. Keep-alive request path: GET /api/v2/tenants/default_tenant/databases/default_database/
   collections_count as admin (first answer must be 200), 1 and 4 connections, one OS process per
   connection (as in request_path.py, whose helpers this reuses), 0.5 s warm-up then a fixed
   window; req/s and p50 latency. nginx closes a keep-alive connection after 1000 requests: the
   reopened connection (a new handshake under TLS) is counted, as in request_path.py.
3. New-connection cost: N sequential requests (default 200) each on a NEW connection (no
   keep-alive: connect, TLS handshake, the request, its answer, then close): median of connect +
   first request, and of its connect part alone (TCP, plus the TLS handshake). Runs in a separate
   process, the CA loaded once before the loop (a client's one-time cost).

Tables show medians across rounds and the TLS/plain ratio (of those medians).

Run (needs the Docker engine and the images ci/chroma-images.sh builds, i.e. after `scripts/test`
once), from the checkout:

    .venv/bin/python bench/tls_cost.py [--rounds N] [--seconds S] [--new-connections N] [--json]

Defaults: 3 rounds, 3 s windows, 200 new connections; about 3-4 minutes on a 2-core machine.
Progress goes to stderr, the tables to stdout (with --json, stdout is one JSON document and the
tables go to stderr). Every project is removed at the end (`chromactl down --volumes --yes`);
traffic stays on 127.0.0.1. Figures from a shared 2-core machine are noisy: the load processes
compete with the servers for the same cores, and other work on the machine (the load average at
start and end is printed) moves the numbers from run to run; read ratios, not absolute figures.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import secrets
import shutil
import ssl
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import request_path  # noqa: E402  (the helpers of the request-path benchmark)
from request_path import (COUNT_PATH, HOST, IMAGE_063, IMAGE_159, NGINX_IMAGE, REQUEST_TIMEOUT,  # noqa: E402
                          START_SLACK, WARMUP, chromactl, fmt, free_port, log, median_or_none, ratio)

MODES = ("plain", "tls")
CONNS = (1, 4)
MAX_CONNS = max(CONNS)
SERVERS = {
    "1.5.9": {"label": "chroma 1.5.9 + nginx gateway", "image": IMAGE_159,
              "init": ["--gateway-image", NGINX_IMAGE]},
    "0.6.3": {"label": "chroma 0.6.3, native (uvicorn)", "image": IMAGE_063, "init": ["--gateway", "none"]},
}
TLS_FLAG = {"plain": "off", "tls": "auto"}


# --- clients: run in the worker processes -------------------------------------------------------


def new_connections_worker(task: dict) -> dict:
    """`count` sequential requests, each on a new connection: connect (+ handshake), one request,
    its answer, close. Times in ms; the close is not timed."""
    task = dict(task)
    deadline = time.monotonic() + task["budget"]
    totals, connects, statuses, errors = [], [], {}, 0
    protocol = cipher = None
    for _ in range(task["count"]):
        if time.monotonic() >= deadline:
            break
        conn = request_path.connection(task)
        try:
            started = time.perf_counter()
            conn.connect()  # TCP, then (HTTPSConnection) the TLS handshake, certificate checked
            connected = time.perf_counter()
            status = request_path._request(conn, task["path"], task["headers"])
            ended = time.perf_counter()
            if protocol is None and isinstance(conn.sock, ssl.SSLSocket):
                protocol, cipher = conn.sock.version(), conn.sock.cipher()[0]
        except (OSError, http.client.HTTPException):
            errors += 1
            time.sleep(0.01)
            continue
        finally:
            conn.close()
        statuses[status] = statuses.get(status, 0) + 1
        if status == 200:
            totals.append((ended - started) * 1000)
            connects.append((connected - started) * 1000)
    return {"total_ms": totals, "connect_ms": connects, "statuses": statuses, "errors": errors,
            "protocol": protocol, "cipher": cipher}


# --- projects, through chromactl ---------------------------------------------------------------


@dataclass
class Project(request_path.Project):
    """request_path's project, with what this benchmark adds: its CA, its `up` time."""

    removed: bool = False
    ca: str | None = None
    up_seconds: float | None = None


def init_project(base: Path, server: str, mode: str, made: list[Project]) -> Project:
    name = "tc" + secrets.token_hex(4)
    folder = base / name
    folder.mkdir()
    project = Project(server, mode, folder, name, free_port())
    made.append(project)  # before init: whatever happens next, cleanup visits the folder
    init = chromactl(folder, "init", "--name", name, "--image", SERVERS[server]["image"], "--host", HOST,
                     "--port", str(project.port), "--tls", TLS_FLAG[mode], *SERVERS[server]["init"], "--json",
                     timeout=120)
    project.headers = {"Authorization": f"Bearer {json.loads(init.stdout)['secret']}"}
    return project


def up_project(project: Project) -> None:
    """`chromactl up --json`, timed, then what it reports checked and a first request made (untimed)."""
    started = time.perf_counter()
    result = chromactl(project.folder, "up", "--json")
    project.up_seconds = time.perf_counter() - started
    up = json.loads(result.stdout)
    what = f"{project.server} {project.mode}"
    if (up.get("gateway") is not None) != (project.server == "1.5.9"):
        raise SystemExit(f"{what}: unexpected gateway in `up --json`: {up.get('gateway')!r}")
    if up["auth"]["mode"] != "token" or not up["auth"]["enforced"]:
        raise SystemExit(f"{what}: unexpected auth in `up --json`: {up['auth']!r}")
    scheme = "https" if project.mode == "tls" else "http"
    if not up["url"].startswith(f"{scheme}://"):
        raise SystemExit(f"{what}: `up --json` reports {up['url']}, expected {scheme}://")
    if project.mode == "tls":
        if not up.get("tls") or not Path(up["tls"]["ca"]).is_file():
            raise SystemExit(f"{what}: no CA in `up --json`: {up.get('tls')!r}")
        project.ca = up["tls"]["ca"]
    elif up.get("tls"):
        raise SystemExit(f"{what}: TLS reported for a --tls off project: {up['tls']!r}")
    conn = request_path.connection({"port": project.port, "ca": project.ca})
    try:
        status = request_path._request(conn, COUNT_PATH, project.headers)
    finally:
        conn.close()
    if status != 200:
        raise SystemExit(f"{what}: collections_count answered {status}, not 200")


def remove(project: Project) -> None:
    result = chromactl(project.folder, "down", "--volumes", "--yes", check=False, timeout=120)
    if result.returncode != 0:
        log(f"cleanup: `chromactl down` in {project.folder} failed: {result.stderr.strip()}")
    else:
        project.removed = True
        shutil.rmtree(project.folder, ignore_errors=True)


# --- measuring ---------------------------------------------------------------------------------


def run_load(pool, project: Project, conns: int, seconds: float) -> dict:
    what = f"{project.server} {project.mode} x{conns}"
    figures, _ = request_path.run_load(pool, project, conns, seconds, project.headers, {200}, what, ca=project.ca)
    return figures


def run_new_connections(pool, project: Project, count: int) -> dict:
    what = f"{project.server} {project.mode} new connections"
    budget = 60.0
    task = {"port": project.port, "ca": project.ca, "path": COUNT_PATH, "headers": project.headers,
            "count": count, "budget": budget}
    try:
        r = pool.apply_async(new_connections_worker, (task,)).get(timeout=budget + 2 * REQUEST_TIMEOUT + 10)
    except multiprocessing.TimeoutError:
        raise SystemExit(f"{what}: the client process did not finish in time")
    except Exception as exc:
        raise SystemExit(f"{what}: {type(exc).__name__}: {exc}")
    if not r["total_ms"]:
        raise SystemExit(f"{what}: no request answered 200 ({r['statuses']}, {r['errors']} errors)")
    return {"median_ms": statistics.median(r["total_ms"]), "connect_median_ms": statistics.median(r["connect_ms"]),
            "p90_ms": statistics.quantiles(r["total_ms"], n=10)[-1] if len(r["total_ms"]) > 1 else None,
            "connections": len(r["total_ms"]), "statuses": {str(k): v for k, v in sorted(r["statuses"].items())},
            "errors": r["errors"], "protocol": r["protocol"], "cipher": r["cipher"]}


def rotated(cells: list, r: int, rounds: int) -> list:
    """request_path's order: the cells rotated by a step per round."""
    step = max(1, len(cells) // rounds)
    shift = (r * step) % len(cells)
    return cells[shift:] + cells[:shift]


def loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


# --- the run -----------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every measure (default 3)")
    parser.add_argument("--seconds", type=float, default=3.0, help="measured window of each load (default 3)")
    parser.add_argument("--new-connections", type=int, default=200,
                        help="sequential new connections per project and round (default 200)")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON document")
    options = parser.parse_args()
    if not 1 <= options.rounds <= 50:
        parser.error("--rounds must be between 1 and 50")
    if not 0.5 <= options.seconds <= 120:
        parser.error("--seconds must be between 0.5 and 120")
    if not 10 <= options.new_connections <= 5000:
        parser.error("--new-connections must be between 10 and 5000")

    client = request_path.docker_with_images()
    others = [c.name for c in client.containers.list()]
    load_start = loadavg()

    pairs = [(server, mode) for server in SERVERS for mode in MODES]
    load_cells = [(server, conns, mode) for server in SERVERS for conns in CONNS for mode in MODES]
    cell_time = START_SLACK + WARMUP + options.seconds + 0.3
    round_time = len(pairs) * 6 + len(load_cells) * cell_time + len(pairs) * (1 + options.new_connections * 0.008)
    log(f"tls_cost: {len(pairs)} long-lived projects, then {options.rounds} rounds of {len(pairs)} fresh `up`s, "
        f"{len(load_cells)} loads of {options.seconds:g} s and {len(pairs)} x {options.new_connections} new "
        f"connections; expect about "
        f"{len(pairs) * 4 + options.rounds * round_time:.0f} s"
        f" (load average {load_start}, {len(others)} containers already running)")

    base = Path(tempfile.mkdtemp(prefix="chromactl-tls-cost-"))
    made: list[Project] = []
    pool = None
    try:
        pool = multiprocessing.get_context("spawn").Pool(MAX_CONNS)
        pool.map(request_path._ready, range(MAX_CONNS), chunksize=1)  # every client process imported and waiting

        # The long-lived projects of measures 2 and 3 (their `up` also warms the images; not counted).
        projects: dict[tuple[str, str], Project] = {}
        for server, mode in pairs:
            project = init_project(base, server, mode, made)
            up_project(project)
            projects[server, mode] = project
            log(f"  up: {server} {mode} on :{project.port} ({project.up_seconds:.1f} s, warm-up, not counted)")

        # 1. `chromactl up` on fresh projects.
        up_times: dict[tuple[str, str], list[float]] = {pair: [] for pair in pairs}
        for r in range(options.rounds):
            log(f"up, round {r + 1}/{options.rounds}")
            for server, mode in rotated(pairs, r, options.rounds):
                project = init_project(base, server, mode, made)
                up_project(project)
                up_times[server, mode].append(project.up_seconds)
                log(f"  {server:5} {mode:5}: up {project.up_seconds:.2f} s")
                remove(project)

        # 2. Keep-alive request path.
        per_round: dict[tuple[str, int, str], list[dict]] = {cell: [] for cell in load_cells}
        for r in range(options.rounds):
            log(f"keep-alive load, round {r + 1}/{options.rounds}")
            for server, conns, mode in rotated(load_cells, r, options.rounds):
                figures = run_load(pool, projects[server, mode], conns, options.seconds)
                per_round[server, conns, mode].append(figures)
                trouble = ""
                if figures["bad_status"] or figures["errors"] or figures["reconnects"]:
                    trouble = (f"  (answers {figures['statuses']}, {figures['errors']} connection errors, "
                               f"{figures['reconnects']} reconnects)")
                log(f"  {server:5} {mode:5} x{conns}: {figures['req_per_s']:8.1f} req/s, "
                    f"p50 {fmt(figures['p50_ms'], 2)} ms{trouble}")

        # 3. New connections.
        fresh: dict[tuple[str, str], list[dict]] = {pair: [] for pair in pairs}
        for r in range(options.rounds):
            log(f"new connections, round {r + 1}/{options.rounds}")
            for server, mode in rotated(pairs, r, options.rounds):
                figures = run_new_connections(pool, projects[server, mode], options.new_connections)
                fresh[server, mode].append(figures)
                log(f"  {server:5} {mode:5}: {figures['connections']} connections, median "
                    f"{figures['median_ms']:.2f} ms (connect {figures['connect_median_ms']:.2f} ms)"
                    + (f", {figures['protocol']} {figures['cipher']}" if figures["protocol"] else "")
                    + (f", {figures['errors']} errors" if figures["errors"] else ""))
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
        for project in made:
            if not project.removed:
                remove(project)
        shutil.rmtree(base, ignore_errors=True)
        if made:
            log(f"cleanup: {len(made)} projects removed")
    load_end = loadavg()

    # Figures.
    ups = []
    for server in SERVERS:
        plain, tls = (statistics.median(up_times[server, mode]) for mode in MODES)
        ups.append({"server": server, "plain_s": plain, "tls_s": tls, "tls_over_plain": ratio(tls, plain),
                    "rounds": {mode: up_times[server, mode] for mode in MODES}})
    load = []
    for server in SERVERS:
        for conns in CONNS:
            row = {"server": server, "conns": conns}
            for mode in MODES:
                rounds = per_round[server, conns, mode]
                row[mode] = {"median_req_per_s": statistics.median(f["req_per_s"] for f in rounds),
                             "median_p50_ms": median_or_none(f["p50_ms"] for f in rounds), "rounds": rounds}
            row["tls_over_plain_req_per_s"] = ratio(row["tls"]["median_req_per_s"], row["plain"]["median_req_per_s"])
            row["tls_over_plain_p50"] = ratio(row["tls"]["median_p50_ms"], row["plain"]["median_p50_ms"])
            load.append(row)
    news = []
    for server in SERVERS:
        row = {"server": server}
        for mode in MODES:
            rounds = fresh[server, mode]
            row[mode] = {"median_ms": statistics.median(f["median_ms"] for f in rounds),
                         "connect_median_ms": statistics.median(f["connect_median_ms"] for f in rounds),
                         "rounds": rounds}
        row["tls_over_plain"] = ratio(row["tls"]["median_ms"], row["plain"]["median_ms"])
        row["tls_extra_ms"] = row["tls"]["median_ms"] - row["plain"]["median_ms"]
        row["tls_protocol"] = next((f"{f['protocol']} {f['cipher']}" for f in fresh[server, "tls"] if f["protocol"]),
                                   None)
        news.append(row)

    label = {server: SERVERS[server]["label"] for server in SERVERS}
    lines = [f"rounds: {options.rounds}; token auth, admin token; medians across rounds; TLS = --tls auto "
             f"(project CA, ECDSA P-256), plain = --tls off; {os.cpu_count()} CPUs, load average "
             f"{load_start} at start, {load_end} at end", "",
             "1. `chromactl up --json`, fresh project to verified server (s)", "",
             "| server | plain | TLS | TLS/plain |", "| --- | ---: | ---: | ---: |"]
    for row in ups:
        lines.append(f"| {label[row['server']]} | {row['plain_s']:.3f} | {row['tls_s']:.3f} | "
                     f"{fmt(row['tls_over_plain'], 3)} |")
    lines += ["", f"2. keep-alive GET {COUNT_PATH}, {options.seconds:g} s window after {WARMUP:g} s warm-up", "",
              "| server | conns | plain req/s | TLS req/s | TLS/plain req/s | plain p50 ms | TLS p50 ms | "
              "TLS/plain p50 |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for row in load:
        p, t = row["plain"], row["tls"]
        lines.append(f"| {label[row['server']]} | {row['conns']} | {fmt(p['median_req_per_s'])} | "
                     f"{fmt(t['median_req_per_s'])} | {fmt(row['tls_over_plain_req_per_s'], 3)} | "
                     f"{fmt(p['median_p50_ms'], 2)} | {fmt(t['median_p50_ms'], 2)} | "
                     f"{fmt(row['tls_over_plain_p50'], 3)} |")
    lines += ["", f"3. new connection + first request (no keep-alive), {options.new_connections} sequential "
              "per round; ms, median (connect = TCP + TLS handshake)", "",
              "| server | plain | TLS | TLS/plain | TLS extra | plain connect | TLS connect | TLS protocol |",
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for row in news:
        p, t = row["plain"], row["tls"]
        lines.append(f"| {label[row['server']]} | {p['median_ms']:.2f} | {t['median_ms']:.2f} | "
                     f"{fmt(row['tls_over_plain'], 3)} | {row['tls_extra_ms']:+.2f} | {p['connect_median_ms']:.2f} | "
                     f"{t['connect_median_ms']:.2f} | {row['tls_protocol'] or '-'} |")
    for row in load:
        for mode in MODES:
            rounds = row[mode]["rounds"]
            bad, errors = sum(f["bad_status"] for f in rounds), sum(f["errors"] for f in rounds)
            if bad or errors:
                lines.append(f"warning: {row['server']} {mode} x{row['conns']}: {bad} non-200 answers "
                             f"({[f['statuses'] for f in rounds]}), {errors} connection errors; not counted")
    for row in news:
        for mode in MODES:
            errors = sum(f["errors"] for f in row[mode]["rounds"])
            bad = sum(v for f in row[mode]["rounds"] for k, v in f["statuses"].items() if k != "200")
            if bad or errors:
                lines.append(f"warning: {row['server']} {mode} new connections: {bad} non-200 answers, "
                             f"{errors} connection errors; not counted")
    table = "\n".join(lines)

    if options.json:
        log(table)
        document = {"settings": {"rounds": options.rounds, "seconds": options.seconds, "warmup": WARMUP,
                                 "new_connections": options.new_connections, "request": f"GET {COUNT_PATH}",
                                 "cpus": os.cpu_count(), "loadavg_start": load_start, "loadavg_end": load_end,
                                 "containers_running_at_start": len(others),
                                 "images": {"0.6.3": IMAGE_063, "1.5.9": IMAGE_159, "gateway": NGINX_IMAGE}},
                    "up": ups, "keep_alive": load, "new_connection": news}
        print(json.dumps(document, indent=2))
    else:
        print(table)


if __name__ == "__main__":
    main()
