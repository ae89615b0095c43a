"""The generated files, loaded by Chroma 0.6.3's own server, and used by its own client."""

import json

import pytest
import yaml

from conftest import COLLECTIONS, http_status, ok, document

ROUNDS = {"CHROMACTL_BCRYPT_ROUNDS": "10"}
NATIVE = "chromadb/chroma:0.6.3"  # Chroma's own auth: the server these tests run
ALL_OPS = ["connect", "list", "create", "add", "query", "count", "get"]


def token_of(project, user):
    return next(u for u in yaml.safe_load((project / "authz.yaml").read_text())["users"] if u["id"] == user)["tokens"][0]


def add(chromactl, *args, stdin=None):
    return document(ok(chromactl("creds", "add", *args, "--json", input=stdin, env=ROUNDS)))["secret"]


@pytest.mark.chroma
def test_token_rbac_roles(chromactl, chroma_server, chroma_client):
    admin = document(ok(chromactl("init", "--image", NATIVE, "--json")))["secret"]
    writer = add(chromactl, "wanda", "--role", "writer")
    reader = add(chromactl, "rita")
    url = chroma_server(chromactl.project)

    assert http_status(url + COLLECTIONS) == 403
    assert http_status(url + COLLECTIONS, {"Authorization": "Bearer " + admin}) == 200
    probe = (chromactl.project / ".chromactl/probe-secret").read_text().strip()
    assert http_status(url + COLLECTIONS, {"Authorization": "Bearer " + probe}) == 200

    done = chroma_client(url, "token", admin, ALL_OPS)
    assert all(done[op] == "ok" for op in ALL_OPS), done
    assert done["query_ids"] == ["a"]

    read = chroma_client(url, "token", reader, ["connect", "list", "query", "count", "get", "add"])
    assert [read[op] for op in ("connect", "list", "query", "count", "get")] == ["ok"] * 5
    assert read["add"] == "denied", read

    write = chroma_client(url, "token", writer, ["connect", "add", "count", "delete_collection"])
    assert write["add"] == "ok" and write["count"] == "ok"
    assert write["delete_collection"] == "denied", write

    assert chroma_client(url, "token", "W" * 40, ["connect"])["connect"] == "denied"
    assert chroma_client(url, "token", admin, ["connect", "delete_collection"])["delete_collection"] == "ok"


@pytest.mark.chroma
def test_x_chroma_token_header(chromactl, chroma_server, chroma_client):
    admin = document(ok(chromactl("init", "--image", NATIVE, "--token-header", "X-Chroma-Token", "--json")))["secret"]
    url = chroma_server(chromactl.project)
    assert http_status(url + COLLECTIONS, {"X-Chroma-Token": admin}) == 200
    assert http_status(url + COLLECTIONS, {"Authorization": "Bearer " + admin}) == 403
    done = chroma_client(url, "token", admin, ALL_OPS, header="X-Chroma-Token")
    assert all(done[op] == "ok" for op in ALL_OPS), done
    assert chroma_client(url, "token", admin, ["connect"], header="Authorization")["connect"] == "denied"


@pytest.mark.chroma
def test_token_without_rbac_gives_every_user_full_access(chromactl, chroma_server, chroma_client):
    ok(chromactl("init", "--image", NATIVE, "--no-rbac"))
    user = add(chromactl, "rita", "--role", "reader")
    url = chroma_server(chromactl.project)
    done = chroma_client(url, "token", user, ALL_OPS + ["delete_collection"])
    assert all(value == "ok" for key, value in done.items() if key in ALL_OPS + ["delete_collection"]), done
    assert http_status(url + COLLECTIONS) == 403


@pytest.mark.chroma
def test_basic_auth_with_rbac(chromactl, chroma_server, chroma_client):
    ok(chromactl("init", "--image", NATIVE, "--auth", "basic", "--password-stdin", input="admin-pass:1-long-enough\n", env=ROUNDS))
    reader_password = add(chromactl, "rita", "--role", "reader")
    add(chromactl, "wanda", "--role", "writer", "--password-stdin", stdin="w-pass-long-enough")
    url = chroma_server(chromactl.project)

    assert http_status(url + COLLECTIONS) == 403
    done = chroma_client(url, "basic", "admin:admin-pass:1-long-enough", ALL_OPS)
    assert all(done[op] == "ok" for op in ALL_OPS), done
    read = chroma_client(url, "basic", f"rita:{reader_password}", ["connect", "query", "add"])
    assert read["query"] == "ok" and read["add"] == "denied", read
    write = chroma_client(url, "basic", "wanda:w-pass-long-enough", ["connect", "add", "delete_collection"])
    assert write["add"] == "ok" and write["delete_collection"] == "denied", write
    assert chroma_client(url, "basic", "admin:wrong", ["connect"])["connect"] == "denied"
    assert chroma_client(url, "basic", "nobody:admin-pass:1-long-enough", ["connect"])["connect"] == "denied"


@pytest.mark.chroma
def test_basic_auth_several_users_without_rbac(chromactl, chroma_server, chroma_client):
    admin = document(ok(chromactl("init", "--image", NATIVE, "--auth", "basic", "--no-rbac", "--json", env=ROUNDS)))["secret"]
    other = add(chromactl, "bob")
    url = chroma_server(chromactl.project)
    for credentials in (f"admin:{admin}", f"bob:{other}"):
        ops = ["connect", "create", "add", "count"]
        done = chroma_client(url, "basic", credentials, ops)
        assert [done[op] for op in ops] == ["ok"] * 4, done
    assert chroma_client(url, "basic", f"bob:{admin}", ["connect"])["connect"] == "denied"


@pytest.mark.chroma
def test_rotated_and_removed_credentials_stop_working(chromactl, chroma_server, chroma_client):
    old = document(ok(chromactl("init", "--image", NATIVE, "--json")))["secret"]
    gone = add(chromactl, "temp", "--role", "admin")
    new = document(ok(chromactl("creds", "rotate", "admin", "--json")))["secret"]
    ok(chromactl("creds", "rm", "temp"))
    url = chroma_server(chromactl.project)
    assert chroma_client(url, "token", old, ["connect"])["connect"] == "denied"
    assert chroma_client(url, "token", gone, ["connect"])["connect"] == "denied"
    assert chroma_client(url, "token", new, ["connect", "list"])["list"] == "ok"


@pytest.mark.chroma
def test_auth_none_is_open(chromactl, chroma_server, chroma_client):
    ok(chromactl("init", "--image", NATIVE, "--auth", "none"))
    url = chroma_server(chromactl.project)
    assert http_status(url + COLLECTIONS) == 200
    assert chroma_client(url, "none", None, ["connect", "create"])["create"] == "ok"
