import pytest

from chromactl.errors import ChromactlError, ProjectFileError
from chromactl.settings import Settings, default_name, parse_settings_file, render_settings_file, resolve_settings

STORED = {"name": "stored", "auth": "basic", "rbac": False, "token_header": "Authorization",
          "image": "chromadb/chroma:0.6.3", "host": "127.0.0.1", "port": 9000}


@pytest.mark.parametrize("given, stored, field, expected", [
    ({}, None, "auth", "token"),
    ({}, None, "rbac", True),
    ({}, None, "host", "0.0.0.0"),
    ({"auth": "none"}, None, "host", "127.0.0.1"),
    ({"auth": "none"}, None, "rbac", False),
    ({}, None, "port", 8000),
    ({}, None, "image", "chromadb/chroma:1.5.9"),
    ({}, None, "bcrypt_rounds", 6),
    ({}, STORED, "port", 9000),  # file over default
    ({"port": 9100}, STORED, "port", 9100),  # flag (or env, folded in by the CLI) over file
    ({"port": None}, STORED, "port", 9000),  # None means not given
    ({}, STORED, "auth", "basic"),
    ({}, None, "name", "My-Project"),
])
def test_precedence(given, stored, field, expected):
    settings = resolve_settings(given, stored, folder_name="My Project")
    assert getattr(settings, field) == expected


@pytest.mark.parametrize("given, message", [
    ({"port": 0}, "invalid port"),
    ({"port": 70000}, "invalid port"),
    ({"host": "localhost"}, "invalid host"),
    ({"auth": "none", "rbac": True}, "RBAC needs authentication"),
    ({"name": "bad name"}, "invalid name"),
    ({"image": "has space"}, "invalid image"),
    ({"bcrypt_rounds": 3}, "bcrypt rounds"),
    ({"bcrypt_rounds": 15}, "bcrypt rounds"),
    ({"token_header": "X-Token"}, "unknown token header"),
])
def test_invalid_values(given, message):
    with pytest.raises(ChromactlError, match=message):
        resolve_settings(given, None, folder_name="p")


def test_stored_value_error_names_the_file():
    with pytest.raises(ChromactlError, match="chromactl.yaml: invalid port"):
        resolve_settings({}, {**STORED, "port": -1}, folder_name="p")


@pytest.mark.parametrize("folder, expected", [("proj", "proj"), ("a b/c", "a-b-c"), ("!!!", "chroma"), ("", "chroma")])
def test_default_name(folder, expected):
    assert default_name(folder) == expected


def test_render_then_parse_round_trips():
    settings = resolve_settings({"auth": "basic", "port": 8123, "name": "x.y"}, None, folder_name="p")
    assert parse_settings_file(render_settings_file(settings)) == settings.to_dict()


@pytest.mark.parametrize("text, line, message", [
    ("name: a\nauth: token\nbogus: 1\n", 3, "unknown setting 'bogus'"),
    ("name: a\nname: b\n", 2, "duplicate key 'name'"),
    ("name: [unclosed\n", 2, "not valid YAML"),
    ("", None, "empty"),
    ("- a\n- b\n", None, "must be a mapping"),
])
def test_broken_settings_file(text, line, message):
    with pytest.raises(ProjectFileError, match=message) as caught:
        parse_settings_file(text)
    assert caught.value.line == line


def test_bad_value_in_settings_file_names_its_line():
    settings = resolve_settings({}, None, folder_name="p")
    text = render_settings_file(settings).replace("port: 8000", "port: eighty")
    with pytest.raises(ProjectFileError) as caught:
        parse_settings_file(text)
    assert "invalid port" in caught.value.message
    assert text.splitlines()[caught.value.line - 1].startswith("port:")


def test_missing_setting():
    with pytest.raises(ProjectFileError, match="missing setting 'image'"):
        parse_settings_file("name: a\nauth: token\nrbac: true\ntoken_header: Authorization\nhost: 0.0.0.0\nport: 1\n")


def test_settings_are_frozen():
    settings = resolve_settings({}, None, folder_name="p")
    assert isinstance(settings, Settings)
    with pytest.raises(AttributeError):
        settings.port = 1


@pytest.mark.parametrize("given, expected", [
    ({}, "nginx"),  # the default image is 1.x
    ({"image": "chromadb/chroma:0.6.3"}, "none"),
    ({"image": "chromadb/chroma:1.5.9"}, "nginx"),
    ({"image": "chromadb/chroma:latest"}, "nginx"),
    ({"image": "chromadb/chroma"}, "nginx"),
    ({"image": "chromadb/chroma:1.5.9", "auth": "none"}, "none"),
    ({"image": "chromadb/chroma:1.5.9", "gateway": "none"}, "none"),
    ({"gateway": "nginx"}, "nginx"),
])
def test_gateway_default(given, expected):
    assert resolve_settings(given, None, folder_name="p").gateway == expected


def test_gateway_needs_auth():
    with pytest.raises(ChromactlError, match="nothing for it to do"):
        resolve_settings({"auth": "none", "gateway": "nginx"}, None, folder_name="p")


def test_route_table_must_cover_every_role_action(monkeypatch):
    from chromactl import gateway, roles
    assert gateway.uncovered_actions(roles.BUILTIN_ROLES) == []
    trimmed = tuple(r for r in gateway.ROUTES if "collection:upsert" not in r[2])
    monkeypatch.setattr(gateway, "ROUTES", trimmed)
    assert gateway.uncovered_actions(roles.BUILTIN_ROLES) == ["collection:upsert"]


def test_route_table_classifies_the_recorded_openapi_document():
    """The same check as the live one in test_gateway.py, on Chroma 1.5.9's /openapi.json as
    recorded in ci/, so a table edit is checked without Docker."""
    import json
    from pathlib import Path

    from chromactl.routes import classify

    document = json.loads((Path(__file__).resolve().parents[1] / "ci/chroma-1.5.9-openapi.json").read_text())
    routes = [(m.upper(), path) for path, ops in document["paths"].items() for m in ops]
    assert [r for r in routes if classify(*r) == "unknown"] == []
    assert classify("GET", "/api/v2/heartbeat") == "public"
    assert classify("POST", "/api/v2/tenants/{tenant}/databases/{database}/collections/{collection_id}/fork") == "refused"
