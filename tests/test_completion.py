"""Shell completion of what the project knows: user names (creds rm|rotate USER, doctor --user),
roles (--role), services (logs --service) and images (--image, --gateway-image). Driven
through the protocol the shells' scripts use (`_CHROMACTL_COMPLETE=complete_bash` with
COMP_WORDS and COMP_CWORD), from the project, a subfolder, --dir and CHROMACTL_DIR; the
completion prints nothing else and never loads the Docker SDK."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import ROUNDS, ok, run_chromactl

# Runs chromactl's entry point and records, at exit, whether the Docker SDK was ever imported.
ENTRY = ("import atexit, sys\n"
         "atexit.register(lambda: open(sys.argv.pop(1), 'w').write(str('docker' in sys.modules)))\n"
         "from chromactl.cli import main\nmain()\n")


def complete(words: str, cwd: Path, tmp_path: Path, env: dict | None = None, shell: str = "bash") -> list[str]:
    """What the shell would offer for the last word of `words` (a trailing space: a new word)."""
    count = len(words.split()) - (0 if words.endswith(" ") else 1)
    marker = tmp_path / f"docker-imported-{abs(hash(words))}"
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("CHROMACTL_")}
    full_env.update({"_CHROMACTL_COMPLETE": f"complete_{shell}", "COMP_WORDS": words, "COMP_CWORD": str(count),
                     "_TYPER_COMPLETE_ARGS": words, "DOCKER_HOST": "unix:///nonexistent/docker.sock", **(env or {})})
    result = subprocess.run([sys.executable, "-c", ENTRY, str(marker)], cwd=cwd, env=full_env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0 and result.stderr == "", (result.returncode, result.stderr)
    assert marker.read_text() == "False"  # completion never touches the engine
    return result.stdout.split()


@pytest.fixture
def project(tmp_path) -> Path:
    folder = tmp_path / "proj"
    folder.mkdir()
    ok(run_chromactl("init", "--host", "127.0.0.1", "--json", cwd=folder, env=ROUNDS))
    for name, role in (("alice", "writer"), ("bob", "reader"), ("ann", "admin")):
        ok(run_chromactl("creds", "add", name, "--role", role, "--no-apply", "--json", cwd=folder, env=ROUNDS))
    return folder


def test_user_names(project, tmp_path):
    assert complete("chromactl creds rm ", project, tmp_path) == ["admin", "alice", "bob", "ann"]  # never the probe
    assert complete("chromactl creds rotate ", project, tmp_path) == ["chromactl-probe", "admin", "alice", "bob",
                                                                       "ann"]
    assert complete("chromactl creds rm a", project, tmp_path) == ["admin", "alice", "ann"]
    assert complete("chromactl creds rotate al", project, tmp_path) == ["alice"]
    assert complete("chromactl doctor --password-stdin --user b", project, tmp_path) == ["bob"]


def test_roles_including_the_projects_own(project, tmp_path):
    assert complete("chromactl creds add carol --role ", project, tmp_path) == ["admin", "writer", "reader"]
    authz = project / "authz.yaml"
    doc = yaml.safe_load(authz.read_text())
    doc["roles_mapping"]["counter"] = {"actions": ["tenant:get_tenant", "db:get_database", "collection:count"]}
    authz.write_text(yaml.safe_dump(doc, sort_keys=False))
    assert complete("chromactl creds add carol --role ", project, tmp_path) == ["admin", "writer", "reader", "counter"]
    assert complete("chromactl creds add carol --role c", project, tmp_path) == ["counter"]


def test_services_follow_the_gateway(project, tmp_path):
    assert complete("chromactl logs --service ", project, tmp_path) == ["chroma", "gateway"]
    ok(run_chromactl("init", "--force", "--image", "chromadb/chroma:0.6.3", "--json", cwd=project, env=ROUNDS))
    assert complete("chromactl logs --service ", project, tmp_path) == ["chroma"]  # native: no gateway


def test_images_the_project_knows(project, tmp_path):
    ok(run_chromactl("init", "--force", "--image", "registry.local:5000/chroma:0.6.3", "--gateway-image",
                     "registry.local:5000/nginx:1.27", "--json", cwd=project, env=ROUNDS))
    assert complete("chromactl upgrade --image ", project, tmp_path) == ["registry.local:5000/chroma:0.6.3",
                                                                         "chromadb/chroma:1.5.9"]
    assert complete("chromactl init --force --image chromadb", project, tmp_path) == ["chromadb/chroma:1.5.9"]
    assert complete("chromactl init --force --gateway-image ", project, tmp_path) == [
        "registry.local:5000/nginx:1.27", "nginx:1.27.5"]


def test_the_project_is_found_as_commands_find_it(project, tmp_path):
    deep = project / "backups" / "old"
    deep.mkdir(parents=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    users = ["admin", "alice", "bob", "ann"]
    assert complete("chromactl creds rm ", deep, tmp_path) == users  # the nearest parent, silently
    assert complete("chromactl creds rm ", elsewhere, tmp_path) == []
    assert complete(f"chromactl --dir {project} creds rm ", elsewhere, tmp_path) == users
    assert complete(f"chromactl -C {project} creds rm ", elsewhere, tmp_path) == users
    assert complete("chromactl creds rm ", elsewhere, tmp_path, env={"CHROMACTL_DIR": str(project)}) == users


def test_a_broken_project_completes_nothing_and_says_nothing(project, tmp_path):
    (project / "authz.yaml").write_text("users: [oops\n")
    assert complete("chromactl creds rm ", project, tmp_path) == []
    assert complete("chromactl creds add x --role ", project, tmp_path) == ["admin", "writer", "reader"]
    assert complete("chromactl logs --service ", project, tmp_path) == ["chroma", "gateway"]  # settings still read


def test_zsh_gets_the_same_names(project, tmp_path):
    offered = complete("chromactl creds rm a", project, tmp_path, shell="zsh")
    assert any("alice" in item for item in offered) and not any("chromactl-probe" in item for item in offered)
