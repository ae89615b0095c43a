"""The README's command reference cannot drift from the CLI: every command has a row,
and each row names exactly the long options that the command's --help lists (as
sqlite-utils checks its docs; test_packaging checks every command's help has an example)."""

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from chromactl.cli import app

README = Path(__file__).resolve().parents[1] / "README.md"
_OPTION = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")


def _help(*path: str) -> str:
    result = CliRunner().invoke(app, [*path, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    return result.output


def _commands(path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every leaf command, from the Commands sections of --help."""
    text = _help(*path)
    if "Commands:" not in text:
        return [path]
    names = [line.split()[0] for line in text.split("Commands:")[1].splitlines() if line.startswith("  ")]
    return [leaf for name in names for leaf in _commands(path + (name,))]


def _readme_rows() -> dict[tuple[str, ...], set[str]]:
    section = README.read_text().split("## Commands", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        match = re.match(r"\| `chromactl ([^`]*)`", line)
        if match:
            words = match[1].replace("\\|", "|").split()
            path = tuple(w for w in words[:2] if re.fullmatch(r"[a-z]+", w))
            rows[path] = set(_OPTION.findall(match[1]))
    return rows


COMMANDS = _commands()


def test_every_command_has_a_readme_row():
    assert sorted(_readme_rows()) == sorted(COMMANDS)


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_readme_row_names_the_options_of_help(path):
    in_help = set(_OPTION.findall(_help(*path).split("Options:", 1)[1])) - {"--help"}
    assert _readme_rows()[path] == in_help


def test_shell_completion_is_offered():
    text = _help()
    assert "--install-completion" in text and "--show-completion" in text
    import subprocess
    import sys

    program = Path(sys.executable).parent / "chromactl"  # the installed command, as a shell runs it
    script = subprocess.run([str(program), "--show-completion", "bash"], capture_output=True, text=True, timeout=60)
    assert script.returncode == 0 and "complete -o default -F _chromactl_completion chromactl" in script.stdout, \
        script.stdout + script.stderr
