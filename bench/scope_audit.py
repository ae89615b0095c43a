"""Benchmark what tenant scoping and the audit trail cost on the gateway's request path, side by
side with the gateway as it was before them, in one run.

One Chroma 1.5.9 behind chromactl's nginx gateway (token auth + RBAC, chromactl's defaults),
set up through chromactl itself, on loopback, with 1,000 collections in default_tenant, in
a database of their own (`many`; the collections_count below is default_database's, empty,
so that Chroma's own work stays small beside the gateway's). Loads (4 keep-alive connections,
one OS process each, 0.5 s warm-up, then a fixed window; medians across rounds, every cell
once per round in an order rotated from round to round):

  before     the admin's collections_count with the gateway's access log in nginx's `combined`
             format and no scoped user: the gateway as it was before the audit trail (the only
             difference left in its configuration when nobody is scoped: the scope rules are
             written only with a scoped user)
  audit      the same request with the audit trail (one JSON line per request, as shipped)
  audit+scope, admin     the same request once a scoped user exists (the scope's maps and the
             id check are in the configuration; the admin is not scoped: its check answers 204)
  audit+scope, scoped    the same request as a user scoped to default_tenant/default_database
             (its scope decided from the path alone)
  by id, admin / scoped  GET .../collections/{id}/count over the 1,000 collections' ids in turn:
             for the scoped user, every id is checked against Chroma's by-id lookup, answered
             from the gateway's cache once seen (warm)

Then the cold id check: one sequential pass over 1,000 collection ids the gateway has not seen
yet (new collections, each asked once by the admin first so that Chroma's own first-time cost
is out of the figure), as the scoped user, against the admin's second pass over the same ids:
what a first request naming an id costs (one by-id lookup to Chroma, then cached).

The "before" configuration is made by rewriting the access_log line of the running gateway's
nginx.conf (in its config volume, through a throwaway container of the gateway's image) and
reloading it; "audit" puts chromactl's line back.

Run (needs the Docker engine and the images ci/chroma-images.sh builds, i.e. after
`scripts/test` once), from the checkout:

    .venv/bin/python bench/scope_audit.py [--rounds N] [--seconds S] [--json]

Defaults: 3 rounds of 4 s windows, about 4 minutes on a 2-core machine. Progress goes to
stderr, the tables to stdout. The project is removed at the end. Figures from a shared 2-core
machine are noisy: the load processes compete with nginx and Chroma for the same cores.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from request_path import (  # noqa: E402  (a sibling script, not a package)
    COUNT_PATH,
    HOST,
    IMAGE_159,
    MAX_CONNS,
    NGINX_IMAGE,
    REQUEST_TIMEOUT,
    START_SLACK,
    WARMUP,
    _ready,
    chromactl,
    docker_with_images,
    fmt,
    free_port,
    log,
    median_or_none,
    ratio,
)

COLLECTIONS = 1000
MANY = "many"  # the database holding the 1,000 collections; default_database stays empty
DB = f"/api/v2/tenants/default_tenant/databases/{MANY}"
AUDIT_LOG = "access_log /dev/stdout chromactl_audit buffer=64k flush=1s;"
BEFORE_LOG = "access_log /dev/stdout combined buffer=64k flush=1s;"
CELLS = ("before", "audit", "audit+scope admin", "audit+scope scoped", "by id admin", "by id scoped")


def cycling_worker(task: dict) -> dict:
    """One keep-alive connection requesting task["paths"] in turn (from an offset of its own):
    a checked first request, load until the window opens, then requests completed inside it."""
    t0 = task["start_at"] + WARMUP
    t1 = t0 + task["seconds"]
    paths, index = task["paths"], task["offset"]
    conn = http.client.HTTPConnection(HOST, task["port"], timeout=REQUEST_TIMEOUT)

    def ask() -> int:
        nonlocal index
        conn.request("GET", paths[index % len(paths)], headers=task["headers"])
        index += 1
        response = conn.getresponse()
        response.read()
        return response.status

    if time.monotonic() >= t0:
        raise RuntimeError("a load process started after the measured window opened (machine overloaded?)")
    if (status := ask()) != 200:
        raise RuntimeError(f"{task['what']}: first response was {status}, expected 200")
    latencies, bad, errors = [], 0, 0
    while (started := time.monotonic()) < t1:
        try:
            status = ask()
        except (OSError, http.client.HTTPException):
            conn.close()
            errors += 1
            time.sleep(0.01)
            continue
        ended = time.monotonic()
        if t0 <= ended <= t1:
            if status == 200:
                latencies.append(ended - started)
            else:
                bad += 1
    conn.close()
    return {"latencies": latencies, "bad": bad, "errors": errors}


def load(pool, port: int, paths: list[str], headers: dict, seconds: float, what: str) -> dict:
    start_at = time.monotonic() + START_SLACK
    tasks = [{"port": port, "paths": paths, "offset": i * len(paths) // MAX_CONNS, "headers": headers,
              "seconds": seconds, "start_at": start_at, "what": what} for i in range(MAX_CONNS)]
    try:
        results = pool.map_async(cycling_worker, tasks, chunksize=1).get(
            timeout=START_SLACK + WARMUP + seconds + 2 * REQUEST_TIMEOUT + 10)
    except Exception as exc:
        raise SystemExit(f"{what}: {type(exc).__name__}: {exc}")
    latencies = [x for r in results for x in r["latencies"]]
    return {"req_per_s": len(latencies) / seconds,
            "p50_ms": statistics.median(latencies) * 1000 if latencies else None,
            "bad_status": sum(r["bad"] for r in results), "errors": sum(r["errors"] for r in results)}


def request(port: int, method: str, path: str, headers: dict, body: dict | None = None) -> tuple[int, dict]:
    conn = http.client.HTTPConnection(HOST, port, timeout=REQUEST_TIMEOUT)
    try:
        data = json.dumps(body).encode() if body is not None else None
        conn.request(method, path, body=data, headers={**headers, "Content-Type": "application/json"})
        response = conn.getresponse()
        text = response.read()
    finally:
        conn.close()
    return response.status, (json.loads(text) if text else {})


def make_collections(port: int, admin: dict, prefix: str) -> list[str]:
    ids = []
    for index in range(COLLECTIONS):
        status, doc = request(port, "POST", DB + "/collections", admin, {"name": f"{prefix}{index:04d}"})
        if status != 200:
            raise SystemExit(f"creating collection {prefix}{index:04d}: {status} {doc}")
        ids.append(doc["id"])
    return ids


def sequential_pass(port: int, paths: list[str], headers: dict) -> list[float]:
    conn = http.client.HTTPConnection(HOST, port, timeout=REQUEST_TIMEOUT)
    latencies = []
    try:
        for path in paths:
            started = time.monotonic()
            conn.request("GET", path, headers=headers)
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                raise SystemExit(f"cold pass: {path} answered {response.status}")
            latencies.append((time.monotonic() - started) * 1000)
    finally:
        conn.close()
    return latencies


def set_access_log(client, volume: str, gateway: str, line: str) -> None:
    """Rewrite the access_log line of the gateway's nginx.conf in its config volume, then reload it."""
    from chromactl.gateway import CONFIG_FILE, MOUNT_DIR, RELOAD_COMMAND

    config = f"{MOUNT_DIR}/{CONFIG_FILE}"
    old, new = (AUDIT_LOG, BEFORE_LOG) if line == BEFORE_LOG else (BEFORE_LOG, AUDIT_LOG)
    client.containers.run(NGINX_IMAGE, ["sed", "-i", f"s|{old}|{new}|", config], remove=True, user="0",
                          volumes={volume: {"bind": MOUNT_DIR, "mode": "rw"}},
                          network_mode="none", entrypoint=[])
    container = client.containers.get(gateway)
    code, text = container.exec_run(["grep", "-c", line, config])
    if code != 0:
        raise SystemExit(f"the gateway's nginx.conf does not hold {line!r} after the rewrite")
    code, text = container.exec_run(list(RELOAD_COMMAND))
    if code != 0:
        raise SystemExit(f"reloading the gateway failed: {text.decode(errors='replace')}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the loads (default 3)")
    parser.add_argument("--seconds", type=float, default=4.0, help="measured window of each load (default 4)")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON document")
    options = parser.parse_args()
    if not 1 <= options.rounds <= 50 or not 0.5 <= options.seconds <= 120:
        parser.error("--rounds must be 1-50 and --seconds 0.5-120")
    client = docker_with_images()

    base = Path(tempfile.mkdtemp(prefix="chromactl-scope-audit-"))
    folder = base / "sa"
    folder.mkdir()
    pool = None
    made = False
    try:
        pool = multiprocessing.get_context("spawn").Pool(MAX_CONNS)
        pool.map(_ready, range(MAX_CONNS), chunksize=1)
        port = free_port()
        name = "sa" + str(port)
        init = json.loads(chromactl(folder, "init", "--name", name, "--image", IMAGE_159, "--host", HOST,
                                    "--port", str(port), "--gateway-image", NGINX_IMAGE, "--json").stdout)
        made = True
        admin = {"Authorization": f"Bearer {init['secret']}"}
        up = json.loads(chromactl(folder, "up", "--json").stdout)
        gateway = up["gateway"]["container"]
        volume = f"chromactl-{name}-config"  # chromactl.configvol.config_volume_name
        if not any(v.name == volume for v in client.volumes.list(filters={"name": volume})):
            raise SystemExit(f"the gateway's config volume {volume} is not there")
        log(f"up: {name} on :{port}; creating {COLLECTIONS} collections in database {MANY}")
        status, doc = request(port, "POST", "/api/v2/tenants/default_tenant/databases", admin, {"name": MANY})
        if status != 200:
            raise SystemExit(f"creating database {MANY}: {status} {doc}")
        ids = make_collections(port, admin, "warm")
        by_id = [f"{DB}/collections/{i}/count" for i in ids]

        per_cell: dict[str, list[dict]] = {cell: [] for cell in CELLS}
        scoped: dict | None = None
        for r in range(options.rounds):
            log(f"round {r + 1}/{options.rounds}")
            # Unscoped first (before/audit, rotated), then with a scoped user (the four others, rotated).
            first = ["before", "audit"][r % 2:] + ["before", "audit"][:r % 2]
            if scoped is not None:
                chromactl(folder, "creds", "rm", "app")
            for cell in first:
                set_access_log(client, volume, gateway, BEFORE_LOG if cell == "before" else AUDIT_LOG)
                figures = load(pool, port, [COUNT_PATH], admin, options.seconds, cell)
                per_cell[cell].append(figures)
                log(f"  {cell:20} {figures['req_per_s']:8.1f} req/s, p50 {fmt(figures['p50_ms'], 2)} ms")
            added = json.loads(chromactl(folder, "creds", "add", "app", "--role", "reader", "--tenant",
                                         "default_tenant", "--database", "default_database", "--database", MANY,
                                         "--json").stdout)
            scoped = {"Authorization": f"Bearer {added['secret']}"}
            if r == 0:  # the scoped user's cache warmed once: every id seen
                sequential_pass(port, by_id, scoped)
            rest = list(CELLS[2:])
            rest = rest[r % len(rest):] + rest[:r % len(rest)]
            for cell in rest:
                headers = scoped if cell.endswith("scoped") else admin
                paths = by_id if cell.startswith("by id") else [COUNT_PATH]
                figures = load(pool, port, paths, headers, options.seconds, cell)
                per_cell[cell].append(figures)
                log(f"  {cell:20} {figures['req_per_s']:8.1f} req/s, p50 {fmt(figures['p50_ms'], 2)} ms")

        log(f"cold id check: {COLLECTIONS} new collections, one sequential pass each as admin and as scoped user")
        cold_ids = make_collections(port, admin, "cold")
        cold_paths = [f"{DB}/collections/{i}/count" for i in cold_ids]
        sequential_pass(port, cold_paths, admin)  # Chroma's own first time with each collection
        cold_admin = sequential_pass(port, cold_paths, admin)
        cold_scoped = sequential_pass(port, cold_paths, scoped)
        warm_scoped = sequential_pass(port, cold_paths, scoped)
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
        if made:
            result = chromactl(folder, "down", "--volumes", "--yes", check=False, timeout=120)
            if result.returncode != 0:
                log(f"cleanup: `chromactl down` failed: {result.stderr.strip()}")
        shutil.rmtree(base, ignore_errors=True)

    med = {cell: {"req_per_s": statistics.median(f["req_per_s"] for f in rounds),
                  "p50_ms": median_or_none(f["p50_ms"] for f in rounds),
                  "bad_status": sum(f["bad_status"] for f in rounds), "errors": sum(f["errors"] for f in rounds)}
           for cell, rounds in per_cell.items()}
    before = med["before"]["req_per_s"]
    lines = [f"rounds: {options.rounds}, window {options.seconds:g} s after {WARMUP:g} s warm-up, "
             f"{MAX_CONNS} connections, Chroma 1.5.9 behind the gateway, token auth + RBAC; medians across rounds",
             "", "| configuration, caller | request | req/s | vs before | p50 ms |", "| --- | --- | ---: | ---: | ---: |"]
    for cell in CELLS:
        what = "GET .../collections/{id}/count, 1,000 ids in turn" if cell.startswith("by id") else \
            "GET .../collections_count"
        lines.append(f"| {cell} | {what} | {fmt(med[cell]['req_per_s'])} | "
                     f"{fmt(ratio(med[cell]['req_per_s'], before), 3)} | {fmt(med[cell]['p50_ms'], 2)} |")
    lines += ["", f"cold id check, one sequential pass over {COLLECTIONS} ids never seen (p50 / mean ms per request):",
              f"  admin (no check)          {fmt(statistics.median(cold_admin), 2)} / {fmt(statistics.mean(cold_admin), 2)}",
              f"  scoped, first time        {fmt(statistics.median(cold_scoped), 2)} / {fmt(statistics.mean(cold_scoped), 2)}",
              f"  scoped, again (cached)    {fmt(statistics.median(warm_scoped), 2)} / {fmt(statistics.mean(warm_scoped), 2)}"]
    for cell, m in med.items():
        if m["bad_status"] or m["errors"]:
            lines.append(f"warning: {cell}: {m['bad_status']} non-200 answers, {m['errors']} connection errors")
    table = "\n".join(lines)
    if options.json:
        log(table)
        print(json.dumps({"settings": {"rounds": options.rounds, "seconds": options.seconds, "conns": MAX_CONNS,
                                       "collections": COLLECTIONS},
                          "loads": {cell: {"median": med[cell], "rounds": per_cell[cell]} for cell in CELLS},
                          "cold_ms": {"admin": cold_admin, "scoped_first": cold_scoped, "scoped_again": warm_scoped}},
                         indent=2))
    else:
        print(table)


if __name__ == "__main__":
    main()
