"""The installed tool: a wheel in a fresh virtualenv, its help, and what it imports."""

import json
import subprocess
import sys
import venv

import pytest

from conftest import REPO, ok, run_chromactl, document


def test_every_command_has_help_with_an_example():
    from typer.main import get_command

    from chromactl.cli import app

    def walk(command, path):
        subcommands = getattr(command, "commands", None)
        if subcommands:
            for name, sub in subcommands.items():
                yield from walk(sub, path + [name])
        else:
            yield path, command

    commands = list(walk(get_command(app), []))
    assert {" ".join(p) for p, _ in commands} >= {"init", "creds add", "creds list", "creds rm", "creds rotate"}
    for path, command in commands:
        assert command.help and "Example: chromactl" in command.help, path
        result = run_chromactl(*path, "--help")
        assert result.returncode == 0 and "Example: chromactl" in result.stdout, path


def test_commands_without_docker_do_not_import_the_docker_sdk(tmp_path):
    code = (
        "import sys\n"
        "from chromactl.cli import main\n"
        "sys.argv = ['chromactl', '-C', sys.argv[1], *sys.argv[2:]]\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print('DOCKER' if 'docker' in sys.modules else 'NO-DOCKER', file=sys.stderr)\n"
    )
    # (creds add|rotate|rm apply the change to a running server through the engine, unless --no-apply.)
    for args in (["--help"], ["init", "--json"], ["creds", "add", "alice", "--no-apply", "--json"], ["creds", "list"]):
        result = subprocess.run([sys.executable, "-c", code, str(tmp_path), *args], capture_output=True, text=True,
                                stdin=subprocess.DEVNULL)
        assert result.stderr.strip().endswith("NO-DOCKER"), (args, result.stderr)


def test_version():
    result = ok(run_chromactl("--version"))
    assert result.stdout.startswith("chromactl 0.")


@pytest.mark.slow
def test_wheel_installs_in_a_fresh_virtualenv_and_inits(tmp_path):
    dist = tmp_path / "dist"
    ok(subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(REPO)],
                      capture_output=True, text=True))
    [wheel] = dist.glob("chromactl-*.whl")
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    ok(subprocess.run([str(env_dir / "bin/pip"), "install", "-q", str(wheel)], capture_output=True, text=True))
    project = tmp_path / "empty"
    project.mkdir()
    result = ok(subprocess.run([str(env_dir / "bin/chromactl"), "init", "--json"], cwd=project, capture_output=True,
                               text=True, stdin=subprocess.DEVNULL))
    assert document(result)["user"] == "admin"
    assert {p.name for p in project.iterdir()} >= {"chromactl.yaml", ".chroma_env", "authz.yaml", ".gitignore"}
    # The templates came from inside the installed package, not from this checkout.
    located = subprocess.run([str(env_dir / "bin/python"), "-c",
                              "import chromactl.templates as t; print(t._template_dir())"],
                             capture_output=True, text=True, cwd=tmp_path)
    assert str(env_dir) in located.stdout
