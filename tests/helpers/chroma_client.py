"""Runs under the test-only virtualenv that has Chroma's real Python client (chromadb).

Reads one JSON request on stdin (so secrets stay off argv):
  {"url": "http://127.0.0.1:PORT", "auth": "token"|"basic"|"none",
   "header": "Authorization"|"X-Chroma-Token", "credentials": "TOKEN" or "USER:PASSWORD",
   "ca": "/abs/ca.pem" (https URLs: the CA to trust),
   "collection": "name", "ops": ["connect", "list", "create", "add", "query", "count",
                                  "get", "delete_collection"]}
and prints one JSON object: {op: "ok" | "denied" | "error: ...", "query_ids": [...]}.
Stops at the first op that fails, since the later ones depend on it.
"""

import json
import sys
from urllib.parse import urlparse

import chromadb
from chromadb.config import Settings

PROVIDERS = {
    "token": "chromadb.auth.token_authn.TokenAuthClientProvider",
    "basic": "chromadb.auth.basic_authn.BasicAuthClientProvider",
}


def classify(exc: Exception) -> str:
    text = f"{type(exc).__name__}: {exc}"
    if any(word in text for word in ("Forbidden", "Unauthorized", "AuthorizationError", "AuthError", "403", "401")):
        return "denied"
    return "error: " + text[:300]


def vector(key: str, dim: int) -> list:
    import hashlib
    seed = hashlib.sha256(key.encode()).digest()
    return [((seed[i % 32] * (i + 1)) % 251) / 251.0 + i * 1e-4 for i in range(dim)]


def fill(collection, request) -> None:
    rows, dim, batch, prefix = request["rows"], request["dim"], request.get("batch", 1000), request.get("prefix", "r")
    for start in range(0, rows, batch):
        ids = [f"{prefix}{i}" for i in range(start, min(rows, start + batch))]
        collection.add(ids=ids, embeddings=[vector(i, dim) for i in ids])


def write_until(collection, request) -> int:
    """Batch after batch of new ids w0, w1, ...; a batch that fails (server stopped) is
    retried with the same ids (upsert), so what the server holds is always a prefix."""
    import os
    import time
    dim, batch, done = request["dim"], request.get("batch", 200), 0
    while not os.path.exists(request["stop_file"]):
        ids = [f"w{i}" for i in range(done, done + batch)]
        try:
            collection.upsert(ids=ids, embeddings=[vector(i, dim) for i in ids])
            done += batch
        except Exception:
            time.sleep(0.2)
    return done


def verify_ids(collection, request) -> dict:
    ids = request["expect_ids"]
    found = set()
    for start in range(0, len(ids), 5000):
        found.update(collection.get(ids=ids[start:start + 5000], include=[])["ids"])
    sample = ids[:: max(1, len(ids) // 100)]
    hits = collection.query(query_embeddings=[vector(i, request["dim"]) for i in sample], n_results=1,
                            include=[])["ids"]
    return {"missing": len(set(ids) - found), "count": collection.count(),
            "self_nearest": sum(1 for i, hit in zip(sample, hits) if hit and hit[0] == i), "sampled": len(sample)}


def main() -> None:
    request = json.load(sys.stdin)
    url = urlparse(request["url"])
    settings = {"anonymized_telemetry": False}
    tls = url.scheme == "https"
    if tls:
        settings["chroma_server_ssl_verify"] = request.get("ca") or True
    if request["auth"] != "none":
        settings["chroma_client_auth_provider"] = PROVIDERS[request["auth"]]
        settings["chroma_client_auth_credentials"] = request["credentials"]
        if request["auth"] == "token":
            settings["chroma_auth_token_transport_header"] = request.get("header", "Authorization")
    result = {}
    client = None
    name = request.get("collection", "docs")
    for op in request["ops"]:
        try:
            if op == "connect":
                client = chromadb.HttpClient(host=url.hostname, port=url.port, ssl=tls, settings=Settings(**settings))
            elif op == "list":
                client.list_collections()
            elif op == "create":
                client.get_or_create_collection(name)
            elif op == "add":
                client.get_collection(name).add(
                    ids=["a", "b"], embeddings=[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], documents=["alpha", "beta"])
            elif op == "query":
                found = client.get_collection(name).query(query_embeddings=[[0.9, 0.1, 0.0]], n_results=1)
                result["query_ids"] = found["ids"][0]
            elif op == "count":
                result["count"] = client.get_collection(name).count()
            elif op == "get":
                result["get_ids"] = client.get_collection(name).get()["ids"]
            elif op == "add_large":  # one call of tens of MB (ids, embeddings and documents)
                rows, dim = 4000, 1200
                client.get_collection(name).add(
                    ids=[f"big{i}" for i in range(rows)],
                    embeddings=[[((i * dim + j) % 997) / 997.0 for j in range(dim)] for i in range(rows)],
                    documents=["x" * 100] * rows)
            elif op == "fill":  # request: rows, dim, batch, prefix; deterministic vectors
                fill(client.get_or_create_collection(name), request)
            elif op == "write_until":  # upsert batches until stop_file exists; retries through outages
                result["written"] = write_until(client.get_or_create_collection(name), request)
            elif op == "verify_ids":  # every id is there, and a sample is its own nearest neighbour
                result.update(verify_ids(client.get_collection(name), request))
            elif op == "delete_collection":
                client.delete_collection(name)
            else:
                raise ValueError(f"unknown op {op}")
            result[op] = "ok"
        except Exception as exc:  # report and stop: later ops depend on this one
            result[op] = classify(exc)
            break
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
