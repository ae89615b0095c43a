"""What a running server answers about its data, to compare before and after a restore or
an upgrade: every collection's count, and a sample of query results.

Over the v2 HTTP API that 0.6 and 1.x both serve, with the credential of a project user
who may read (chromactl's own probe user may only list names). Tokens are kept in
authz.yaml, so token projects are checked in full; basic auth keeps only password hashes,
so there the counts come from chroma.sqlite3 and queries are not sampled (said so)."""

from __future__ import annotations

import http.client
import json
from dataclasses import dataclass

from chromactl.errors import ChromactlError
from chromactl.probe import Endpoint, Target, credential_headers, request
from chromactl.project import Project

BASE = "/api/v2/tenants/default_tenant/databases/default_database/collections"
SAMPLE_COLLECTIONS = 5
SAMPLE_QUERIES = 3
NEIGHBOURS = 5
DISTANCE_TOLERANCE = 1e-4


@dataclass(frozen=True)
class Snapshot:
    counts: dict[str, int]  # "default_tenant/default_database/NAME" -> records
    queries: list[dict]  # {"collection", "embedding", "ids", "distances"}


def reader_headers(project: Project) -> dict[str, str] | None:
    """Headers of a project user allowed to count, get and query; None when chromactl holds
    no such secret (basic auth)."""
    settings = project.settings
    if not settings.auth_enabled:
        return {}
    if settings.auth != "token":
        return None
    for user in project.credentials.users:
        if user.internal or not user.tokens:
            continue
        if not settings.rbac or user.role in ("admin", "writer", "reader"):
            return credential_headers(settings, user.name, user.tokens[0])
    return None


def _call(url: Target, method: str, path: str, headers: dict[str, str], body: dict | None = None):
    payload = json.dumps(body).encode() if body is not None else None
    all_headers = {**headers, **({"Content-Type": "application/json"} if payload else {})}
    try:
        status, data = request(url, method, path, all_headers, payload, timeout=60)
    except (OSError, http.client.HTTPException) as exc:
        where = url.url if isinstance(url, Endpoint) else url
        raise ChromactlError(f"{where}{path}: no answer ({type(exc).__name__})") from None
    if status != 200:
        raise ChromactlError(f"{method} {path} got HTTP {status}: {data[:200].decode(errors='replace')}")
    return json.loads(data)


def take_snapshot(url: Target, headers: dict[str, str], queries: list[dict] | None = None) -> Snapshot:
    """Counts of every collection of the default database, and query results: for the
    embeddings given (from an earlier snapshot), or for a few records of each collection."""
    collections = _call(url, "GET", BASE, headers)
    ids = {c["name"]: c["id"] for c in collections}
    counts = {f"default_tenant/default_database/{name}": _call(url, "GET", f"{BASE}/{cid}/count", headers)
              for name, cid in ids.items()}
    if queries is None:
        queries = []
        for name in sorted(ids)[:SAMPLE_COLLECTIONS]:
            got = _call(url, "POST", f"{BASE}/{ids[name]}/get", headers,
                        {"limit": SAMPLE_QUERIES, "include": ["embeddings"]})
            queries += [{"collection": name, "embedding": list(e)} for e in got.get("embeddings") or []]
    answered = []
    for query in queries:
        cid = ids.get(query["collection"])
        if cid is None:
            answered.append({**query, "ids": None, "distances": None})
            continue
        found = _call(url, "POST", f"{BASE}/{cid}/query", headers,
                      {"query_embeddings": [query["embedding"]], "n_results": NEIGHBOURS, "include": ["distances"]})
        answered.append({**query, "ids": found["ids"][0], "distances": found["distances"][0]})
    return Snapshot(counts, answered)


def differences(before: Snapshot, after: Snapshot) -> list[str]:
    """What the second snapshot answers differently; empty when they agree."""
    problems = []
    if before.counts != after.counts:
        changed = sorted(k for k in set(before.counts) | set(after.counts) if before.counts.get(k) != after.counts.get(k))
        problems += [f"count of {k}: {before.counts.get(k)} before, {after.counts.get(k)} after" for k in changed[:5]]
    for old, new in zip(before.queries, after.queries):
        if new["ids"] is None:
            problems.append(f"collection {old['collection']} is gone")
            continue
        # Equal distances may come back in another order: compare (distance, id) pairs.
        same = len(old["ids"]) == len(new["ids"]) and all(
            abs(a - b) <= DISTANCE_TOLERANCE for a, b in zip(old["distances"], new["distances"])) and (
            old["ids"] == new["ids"] or sorted(old["ids"]) == sorted(new["ids"]))
        if not same:
            problems.append(f"a query on {old['collection']} answered {new['ids'][:3]}..., before {old['ids'][:3]}...")
    return problems
