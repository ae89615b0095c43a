"""What a new user meets in the first hour, without an engine: the project found from a
subfolder, errors that point to what a pip user has (never a source file), the engine's
address and where it came from, versions as the user knows them, and one exit code per
kind of mistake for every command (README "Exit codes and JSON")."""

from __future__ import annotations

import ast
import re

import pytest

from conftest import REPO, document, ok

PACKAGE = REPO / "chromactl"
NO_ENGINE = {"DOCKER_HOST": "unix:///nonexistent/docker.sock"}


# --- errors point to what the user has ------------------------------------------------------


def _error_strings() -> list[tuple[str, int, str]]:
    """Every string literal (f-string parts too) passed to an error or a hint, with where it is."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")
            if not (name.endswith("Error") or name in ("Cancelled", "EngineUnavailable", "no_project", "warn")):
                continue
            for arg in [*node.args, *(k.value for k in node.keywords)]:
                for sub in ast.walk(arg):
                    if isinstance(sub, ast.Constant) and isinstance(sub.value, str):
                        found.append((str(path.relative_to(REPO)), sub.lineno, sub.value))
    return found


def test_no_error_or_hint_points_to_a_source_file():
    strings = _error_strings()
    assert len(strings) > 200  # the scan sees the errors (a broken scan would pass vacuously)
    pointing = [(where, line, text) for where, line, text in strings
                if re.search(r"\b[\w/]+\.py\b|(?<![.\w])chromactl/\w", text)]
    assert pointing == []


def test_an_unknown_action_in_authz_yaml_names_the_actions_and_the_readme(chromactl):
    ok(chromactl("init", "--host", "127.0.0.1", "--json"))
    path = chromactl.project / "authz.yaml"
    path.write_text(path.read_text().replace("- collection:query", "- collection:qeury", 1))
    result = chromactl("creds", "list")
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert "authz.yaml:" in line and "unknown action 'collection:qeury'" in line
    assert "did you mean 'collection:query'?" in line and "db:list_collections" in line and "README: Roles" in line
    assert ".py" not in line
    readme = (REPO / "README.md").read_text()
    roles_section = readme.split("### Roles", 1)[1].split("\n## ", 1)[0]
    from chromactl.roles import ACTIONS

    assert all(f"`{action}`" in roles_section for action in ACTIONS)  # the README lists what the hint names


# --- the project from a subfolder --------------------------------------------------------------


def test_a_subfolder_finds_the_nearest_project_and_says_which(chromactl):
    ok(chromactl("init", "--host", "127.0.0.1", "--json"))
    deep = chromactl.project / "backups" / "old"
    deep.mkdir(parents=True)
    result = ok(chromactl("creds", "list", "--json", cwd=deep))
    assert [u["user"] for u in document(result, "creds list")["users"]] == ["chromactl-probe", "admin"]
    assert result.stderr.strip() == f"using the project in {chromactl.project}"
    # In the project itself nothing is said; --dir and CHROMACTL_DIR name it without a search.
    assert ok(chromactl("creds", "list")).stderr == ""
    elsewhere = chromactl.project.parent / "elsewhere"
    elsewhere.mkdir()
    assert ok(chromactl("--dir", str(chromactl.project), "creds", "list", cwd=elsewhere)).stderr == ""
    assert ok(chromactl("creds", "list", cwd=elsewhere, env={"CHROMACTL_DIR": str(chromactl.project)})).stderr == ""
    missing = chromactl("creds", "list", cwd=elsewhere)
    assert missing.returncode == 1 and f"no chromactl project in {elsewhere}" in missing.stderr
    # init makes a project where it is asked, never in a parent.
    ok(chromactl("init", "--host", "127.0.0.1", "--json", cwd=deep))
    assert (deep / "chromactl.yaml").is_file()
    assert ok(chromactl("creds", "list", cwd=deep)).stderr == ""  # the nearest one now


# --- the engine's address, and where it came from -----------------------------------------------


def test_the_engine_address_comes_from_docker_host_a_context_or_the_default(tmp_path, monkeypatch):
    import hashlib
    import json

    from chromactl.engine import DEFAULT_ADDRESS, engine_address

    config = tmp_path / "docker-config"
    folder = config / "contexts" / "meta" / hashlib.sha256(b"remote").hexdigest()
    folder.mkdir(parents=True)
    (folder / "meta.json").write_text(json.dumps({
        "Name": "remote", "Metadata": {},
        "Endpoints": {"docker": {"Host": "tcp://10.1.2.3:2376", "SkipTLSVerify": False}}}))
    (config / "config.json").write_text("{}")  # the SDK finds contexts beside an existing config file
    monkeypatch.setenv("DOCKER_CONFIG", str(config))
    for key in ("DOCKER_HOST", "DOCKER_CONTEXT"):
        monkeypatch.delenv(key, raising=False)
    assert engine_address({"DOCKER_HOST": "unix:///x.sock"}) == ("unix:///x.sock", "DOCKER_HOST")
    assert engine_address({"DOCKER_CONTEXT": "remote"}) == ("tcp://10.1.2.3:2376", "DOCKER_CONTEXT 'remote'")
    assert engine_address({}) == (DEFAULT_ADDRESS, "the default socket")
    (config / "config.json").write_text(json.dumps({"currentContext": "remote"}))
    assert engine_address({}) == ("tcp://10.1.2.3:2376", "the current docker context 'remote'")
    assert engine_address({"DOCKER_HOST": "unix:///x.sock"}) == ("unix:///x.sock", "DOCKER_HOST")  # it wins


@pytest.mark.parametrize("env, words", [
    ({"DOCKER_HOST": "unix:///nonexistent/docker.sock"}, "unix:///nonexistent/docker.sock (from DOCKER_HOST)"),
    ({"DOCKER_HOST": "tcp://127.0.0.1:1"}, "tcp://127.0.0.1:1 (from DOCKER_HOST)"),
])
def test_the_engine_error_names_the_address_tried(chromactl, env, words):
    ok(chromactl("init", "--host", "127.0.0.1", "--json"))
    result = chromactl("status", env=env)
    assert result.returncode == 3
    [line] = result.stderr.splitlines()
    assert words in line and "start the engine" in line


# --- versions as the user knows them ------------------------------------------------------------


@pytest.mark.parametrize("image, api, expected", [
    ("chromadb/chroma:1.5.9", "1.0.0", "1.5.9"), ("chromadb/chroma:0.6.3", "0.6.3", "0.6.3"),
    ("registry:5000/chroma:1.5", "1.0.0", "1.5.0"), ("chromadb/chroma:latest", "1.0.0", "1.0.0"),
    ("chromadb/chroma", None, None), ("chromadb/chroma@sha256:" + "a" * 64, "1.0.0", "1.0.0"),
])
def test_the_version_is_the_image_tag_with_the_api_beside_it(image, api, expected):
    from chromactl.images import chroma_version

    assert chroma_version(image, api) == expected


def test_up_says_the_tag_and_the_api_version_when_they_differ():
    """`up`'s first line: "Chroma 1.5.9 (API 1.0.0) is up", from a stand-in result."""
    from chromactl.output import up_result

    text = _render_up(up_result, image="chromadb/chroma:1.5.9", api="1.0.0")
    assert text.startswith("Chroma 1.5.9 (API 1.0.0) is up at http://127.0.0.1:8000")
    assert _render_up(up_result, image="chromadb/chroma:0.6.3", api="0.6.3").startswith("Chroma 0.6.3 is up")


def _render_up(up_result, image: str, api: str) -> str:
    import io
    from contextlib import redirect_stdout
    from types import SimpleNamespace

    from chromactl.deploy import Action
    from chromactl.settings import resolve_settings

    settings = resolve_settings({"image": image, "auth": "none", "host": "127.0.0.1"}, None, folder_name="p")
    deployed = SimpleNamespace(url="http://127.0.0.1:8000", api_version=api, action=Action.CREATED,
                               spec=SimpleNamespace(name="chromactl-p", volume="chromactl-p-data"), gateway=None,
                               tls=None, auth=None, heartbeat_ms=1.0, gateway_action=None)
    result = SimpleNamespace(deployed=deployed, project=SimpleNamespace(settings=settings), init=None)
    buffer = io.StringIO()
    with redirect_stdout(buffer):
        up_result(result, as_json=False)
    return buffer.getvalue()
