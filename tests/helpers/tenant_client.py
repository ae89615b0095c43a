"""Runs under the test-only virtualenv with Chroma 1.x's real Python client (chromadb).

Reads one JSON request on stdin (secrets stay off argv):
  {"snippet": "import os, chromadb ... client = ...",   # the code `creds add --json` printed, run as is
   "credentials": "TOKEN",                                # put in CHROMA_CLIENT_AUTH_CREDENTIALS for it
   or instead of a snippet:
   "url": "https://127.0.0.1:PORT", "ca": "/abs/ca.pem", "credentials": "TOKEN",
   "tenant": "acme", "database": "prod",                  # named by the client (optional)
   "ops": [["create", "name"], ["add", "name"], ["count", "name"], ...]}
and prints one JSON object {"results": [[op, "ok" | "denied" | "error: ...", value], ...]}. Every op is
tried (a refusal is the expected outcome of most of them); "connect" failing stops the rest.
"""

import json
import os
import sys
from urllib.parse import urlparse

import chromadb
from chromadb.config import Settings

VECTORS = {"a": [1.0, 0.0, 0.0], "b": [0.0, 1.0, 0.0], "c": [0.0, 0.0, 1.0]}


def classify(exc: Exception) -> str:
    text = f"{type(exc).__name__}: {exc}"
    if any(word in text for word in ("Forbidden", "Unauthorized", "AuthorizationError", "AuthError", "403", "401")):
        return "denied"
    return "error: " + text[:400]


def connect(request):
    if "snippet" in request:
        os.environ["CHROMA_CLIENT_AUTH_CREDENTIALS"] = request["credentials"]
        scope = {}
        exec(request["snippet"], scope)  # the printed snippet, exactly
        return scope["client"]
    url = urlparse(request["url"])
    settings = {"anonymized_telemetry": False,
                "chroma_client_auth_provider": "chromadb.auth.token_authn.TokenAuthClientProvider",
                "chroma_client_auth_credentials": request["credentials"]}
    if url.scheme == "https":
        settings["chroma_server_ssl_verify"] = request["ca"]
    named = {k: request[k] for k in ("tenant", "database") if k in request}
    return chromadb.HttpClient(host=url.hostname, port=url.port, ssl=url.scheme == "https",
                               settings=Settings(**settings), **named)


def run(client, op: str, args: list):
    if op == "identity":
        identity = client.get_user_identity()
        return {"user_id": identity.user_id, "tenant": identity.tenant, "databases": list(identity.databases)}
    if op == "where":
        return [client.tenant, client.database]
    if op == "list":
        return sorted(c.name for c in client.list_collections())
    if op == "create":
        return str(client.get_or_create_collection(args[0]).id)
    if op == "delete_collection":
        return client.delete_collection(args[0])
    if op == "modify":
        return client.get_collection(args[0]).modify(metadata={"changed": True})
    if op == "fork":
        return client.get_collection(args[0]).fork(args[1]).name
    collection = client.get_collection(args[0])
    if op == "add":
        return collection.add(ids=list(VECTORS), embeddings=list(VECTORS.values()),
                              documents=[f"{args[0]} {k}" for k in VECTORS])
    if op == "count":
        return collection.count()
    if op == "get":
        found = collection.get(include=["documents", "metadatas"])
        return sorted(zip(found["ids"], found["documents"], [json.dumps(m, sort_keys=True) for m in found["metadatas"]]))
    if op == "peek":
        return sorted(collection.peek()["ids"])
    if op == "query":
        return collection.query(query_embeddings=[[0.9, 0.1, 0.0]], n_results=1)["ids"][0]
    if op == "update":
        # Embeddings given: the default embedding function would download a model.
        return collection.update(ids=["a"], embeddings=[[1.0, 0.0, 0.0]], documents=["changed"])
    if op == "upsert":
        return collection.upsert(ids=["z"], embeddings=[[0.5, 0.5, 0.5]], documents=["upserted"])
    if op == "delete":
        return collection.delete(ids=["b"])
    raise ValueError(f"unknown op {op}")


def main() -> None:
    request = json.load(sys.stdin)
    results = []
    try:
        client = connect(request)
        results.append(["connect", "ok", None])
    except Exception as exc:
        results.append(["connect", classify(exc), f"{type(exc).__name__}: {exc}"[:400]])
        json.dump({"results": results}, sys.stdout)
        return
    for op, *args in request["ops"]:
        try:
            results.append([op, "ok", run(client, op, args)])
        except Exception as exc:
            results.append([op, classify(exc), f"{type(exc).__name__}: {exc}"[:400]])
    json.dump({"results": results}, sys.stdout)


if __name__ == "__main__":
    main()
