"""The JSON contract and the exit codes, without an engine: every --json run prints one
document on stdout that chromactl/output.schema.json accepts, errors included, and the
exit code says the kind of outcome (README "Exit codes and JSON")."""

import json

import pytest

from conftest import document, ok


@pytest.fixture
def project(chromactl):
    ok(chromactl("init", "--host", "127.0.0.1", "--json"))
    return chromactl


NO_ENGINE = {"DOCKER_HOST": "unix:///nonexistent/docker.sock"}


@pytest.mark.parametrize("args, env, code, command, words", [
    (["status", "--json"], NO_ENGINE, 3, "status", "unix:///nonexistent/docker.sock (from DOCKER_HOST)"),
    (["up", "--json", "--pull", "never"], NO_ENGINE, 3, "up", "unix:///nonexistent/docker.sock"),
    (["down", "--json"], NO_ENGINE, 3, "down", "no container engine answers"),
    (["audit", "--json"], NO_ENGINE, 3, "audit", "no container engine answers"),
    (["creds", "add", "bob", "--role", "superuser", "--json"], {}, 2, "creds add", "unknown role 'superuser'"),
    (["creds", "add", "admin", "--json"], {}, 1, "creds add", "already exists"),
    (["init", "--json"], {}, 1, "init", "already a chromactl project"),
    (["init", "--force", "--auth", "tokn", "--json"], {}, 2, "init", "tokn"),
    (["upgrade", "--yes", "--json"], {}, 2, "upgrade", "--image"),
    (["upgrade", "--rollback", "--image", "x:1", "--json"], {}, 2, "upgrade --rollback", "--rollback takes no --image"),
    (["tls", "show", "--json"], {}, 1, "tls show", "tls off"),
    (["creds", "rm", "nobody", "--json"], {}, 1, "creds rm", "no user 'nobody'"),
    (["tenant", "add", "x_", "--json"], {}, 2, "tenant add", "a tenant name is 3-63"),
])
def test_errors_under_json_are_one_document_with_the_exit_code(project, args, env, code, command, words):
    result = project(*args, env=env)
    assert result.returncode == code, (result.stdout, result.stderr)
    doc = document(result, command)
    assert doc["error"]["exit_code"] == code and words in doc["error"]["message"] + str(doc["error"]["hint"]), doc
    assert "Traceback" not in result.stderr


def test_errors_without_json_are_one_line_on_stderr_naming_the_engine_address(project):
    result = project("status", env=NO_ENGINE)
    assert result.returncode == 3 and result.stdout == ""
    [line] = result.stderr.strip().splitlines()
    assert "unix:///nonexistent/docker.sock (from DOCKER_HOST)" in line and "DOCKER_HOST" in line


def test_a_declined_confirmation_reads_as_a_choice_not_an_error(capsys):
    from chromactl import output
    from chromactl.errors import Cancelled, ChromactlError

    output.error(Cancelled("cancelled: nothing was restored", hint="pass --yes to restore without asking"))
    output.error(ChromactlError("no such backup file: x"))
    lines = capsys.readouterr().err.splitlines()
    assert lines == ["cancelled: nothing was restored (pass --yes to restore without asking)",
                     "chromactl: error: no such backup file: x"]
    assert Cancelled("x").exit_code == 1


def test_init_and_creds_documents_validate(project):
    doc = document(ok(project("creds", "add", "rita", "--no-apply", "--json")), "creds add")
    assert doc["applied"] == {"outcome": "deferred", "in_effect": False, "revocation_pending": False, "error": None}
    listed = document(ok(project("creds", "list", "--json")), "creds list")
    assert [u["user"] for u in listed["users"]] == ["chromactl-probe", "admin", "rita"]
    removed = document(ok(project("creds", "rm", "rita", "--no-apply", "--json")), "creds rm")
    assert removed["removed"] is True and removed["applied"]["outcome"] == "deferred"
    dry = document(ok(project("up", "--dry-run", "--json")), "up")
    assert dry["action"] == "dry-run" and dry["commands"][-1].startswith("docker run")


def test_the_schema_refuses_what_the_contract_forbids():
    """The schema is strict enough to catch a drift: a string where an object belongs."""
    import jsonschema
    from conftest import SCHEMA

    good = {"schema_version": 1, "command": "creds rm", "user": "x", "removed": True, "applied": None}
    jsonschema.validate(good, SCHEMA)
    for bad in ({**good, "applied": "In effect now"}, {**good, "schema_version": 2},
                {"schema_version": 1, "command": "status", "instances": [{"name": "x"}]},
                {"schema_version": 1, "command": "up", "error": {"message": "m"}}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, SCHEMA)


def test_tenant_commands_without_a_server_exit_4_with_one_document(chromactl):
    from conftest import free_port

    ok(chromactl("init", "--host", "127.0.0.1", "--port", str(free_port()), "--json"))
    for args in (["tenant", "add", "acme", "--database", "prod"], ["tenant", "list"]):
        result = chromactl(*args, "--json")
        assert result.returncode == 4, (result.stdout, result.stderr)
        doc = document(result, " ".join(args[:2]))
        assert "does not answer" in doc["error"]["message"] and "chromactl up" in doc["error"]["hint"], doc
        assert "Traceback" not in result.stderr
