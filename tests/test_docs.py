"""Docs that cannot drift: the README's command table and docs/commands.md are generated
from the CLI (scripts/docs.py, as sqlite-utils does with cog) and must equal what the
generator prints now; help defaults come from the constants the code uses; and the
README's sentences that state a number are checked against those constants."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from chromactl import audit, credentials, gateway, settings, tls
from chromactl.cli import app

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()
sys.path.insert(0, str(REPO / "scripts"))

import docs  # noqa: E402  (scripts/docs.py)


def _help(*path: str) -> str:
    result = CliRunner().invoke(app, [*path, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    return result.output


def test_readme_table_and_command_reference_are_what_the_cli_generates():
    assert docs.main(["--check"]) == 0, "run: .venv/bin/python scripts/docs.py"


def test_every_command_is_in_the_generated_table():
    section = README.split(docs.BEGIN, 1)[1].split(docs.END, 1)[0]
    for path, _ in docs.leaves():
        assert f"`chromactl {' '.join(path)}" in section, path


@pytest.mark.parametrize("path, flag, value", [
    (("init",), "--image", settings.DEFAULT_IMAGE),
    (("init",), "--gateway-image", settings.DEFAULT_GATEWAY_IMAGE),
    (("init",), "--port", str(settings.DEFAULT_PORT)),
    (("init",), "--bcrypt-rounds", str(settings.DEFAULT_BCRYPT_ROUNDS)),
    (("creds", "add"), "--bcrypt-rounds", str(settings.DEFAULT_BCRYPT_ROUNDS)),
])
def test_help_defaults_are_the_code_defaults(path, flag, value):
    text = " ".join(_help(*path).split())
    assert re.search(re.escape(flag) + r"[^\[]*\[default: " + re.escape(value) + r"\]", text), (flag, value)


@pytest.mark.parametrize("statement", [
    f"`{settings.DEFAULT_IMAGE}` behind chromactl's nginx gateway `{settings.DEFAULT_GATEWAY_IMAGE}`",
    f"default {settings.DEFAULT_BCRYPT_ROUNDS}",
    f"at least {credentials.MIN_PASSWORD_LENGTH} characters",
    f"{credentials.PASSWORD_LENGTH} random letters and digits",
    f"tokens: {credentials.TOKEN_LENGTH} letters and digits",
    f"Imported tokens must have {credentials.MIN_TOKEN_LENGTH} characters",
    f"{tls.LEAF_DAYS} days",
    f"at most {gateway.CONNECTIONS_PER_CLIENT} requests in progress per client address",
    f"bcrypt at its cheapest cost, {credentials.GENERATED_ROUNDS}",
    f"a burst of {gateway.COSTLY_BURST}",
    f"a new file every {gateway.LOG_ROTATION.max_size} (10 MiB), the newest {gateway.LOG_ROTATION.max_files} kept",
    f"at most {audit.ARCHIVE_MAX_FILES} files and {audit.ARCHIVE_MAX_MB} MB together",
    f"the last minute, read from the same lines",
])
def test_readme_numbers_are_the_code_numbers(statement):
    assert statement in " ".join(README.split()), statement


def test_readme_states_no_contradicted_number():
    """Sentences once true and since changed: each of them wrong now."""
    flat = " ".join(README.split())
    for stale in ("cost 12 by default", "must be added again", "about 0.3 s of CPU at cost 12",
                  "[default: chromadb/chroma:0.6.3]", "always use cost 4"):
        assert stale not in flat, stale
    assert "always use cost 4" not in (REPO / "templates" / "chromactl.yaml.tmpl").read_text()


def test_shell_completion_is_offered():
    text = _help()
    assert "--install-completion" in text and "--show-completion" in text
    program = Path(sys.executable).parent / "chromactl"  # the installed command, as a shell runs it
    # From a bash, as an operator types it: Typer finds the shell among the command's parents
    # (`; true` keeps bash from replacing itself with the command), not from an argument.
    script = subprocess.run(["bash", "-c", f"'{program}' --show-completion; true"], capture_output=True, text=True,
                            timeout=60, stdin=subprocess.DEVNULL)
    assert script.returncode == 0 and "complete -o default -F _chromactl_completion chromactl" in script.stdout, \
        script.stdout + script.stderr
