"""One exit code per kind of mistake, for every command (README "Exit codes and JSON"):
usage and bad values 2, refused operations 1, no engine 3; a declined prompt says
"cancelled" and exits 1 without "error". Every leaf command is found by walking the CLI
(as scripts/docs.py does), so a new command is covered as soon as it exists."""

from __future__ import annotations

import os
import pty
import sys
import time
from pathlib import Path

import pytest
import typer

from chromactl.cli import app
from conftest import ROUNDS, document, ok, run_chromactl

NO_ENGINE = {"DOCKER_HOST": "unix:///nonexistent/docker.sock"}


def leaves(command=None, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], object]]:
    command = command or typer.main.get_command(app)
    subcommands = getattr(command, "commands", None)
    if not subcommands:
        return [(path, command)]
    return [leaf for name, sub in subcommands.items() for leaf in leaves(sub, path + (name,))]


LEAVES = leaves()


def test_the_walk_finds_every_command():
    names = {" ".join(path) for path, _ in LEAVES}
    assert {"init", "up", "status", "down", "logs", "backup", "restore", "upgrade", "doctor", "creds add",
            "creds rotate", "creds rm", "creds list", "export compose", "export kubernetes", "tls show",
            "tls renew", "audit", "tenant add", "tenant list"} == names


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("exit") / "proj"
    folder.mkdir()
    ok(run_chromactl("init", "--host", "127.0.0.1", "--json", cwd=folder, env=ROUNDS))
    return folder


@pytest.mark.parametrize("path", [p for p, _ in LEAVES], ids=lambda p: " ".join(p))
def test_an_unknown_option_is_a_usage_error_with_one_usage_line(project, path):
    result = run_chromactl(*path, "--no-such-option", cwd=project, env=NO_ENGINE)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert [line for line in lines if line.startswith("Usage:")] == [f"Usage: chromactl {' '.join(path)} "
                                                                      + lines[0].split(" ".join(path), 1)[1].strip()]
    assert lines[0].startswith(f"Usage: chromactl {' '.join(path)} ")
    assert lines[-1] == "Error: No such option: --no-such-option"
    assert len(lines) <= 4 and "Traceback" not in result.stderr


@pytest.mark.parametrize("path", [p for p, c in LEAVES if any(o == "--json" for param in c.params
                                                               for o in getattr(param, "opts", []))],
                         ids=lambda p: " ".join(p))
def test_under_json_a_usage_error_is_one_document_with_exit_2(project, path):
    result = run_chromactl(*path, "--json", "--no-such-option", cwd=project, env=NO_ENGINE)
    assert result.returncode == 2
    doc = document(result)
    assert doc["error"]["exit_code"] == 2 and "--no-such-option" in doc["error"]["message"]


# Typical bad values: each is a usage error (2), said in one error line, and nothing changes.
BAD_VALUES = [
    (["init", "--force", "--port", "abc"], "'--port'"),
    (["init", "--force", "--port", "70000"], "invalid port 70000"),
    (["init", "--force", "--auth", "tokn"], "'tokn' is not one of"),
    (["init", "--force", "--bcrypt-rounds", "99"], "bcrypt rounds must be a number from 4 to 14"),
    (["init", "--force", "--name", "bad name"], "invalid name 'bad name'"),
    (["init", "--force", "--host", "notanaddress"], "invalid host address"),
    (["init", "--force", "--token-header", "X"], "'X' is not one of"),
    (["init", "--force", "--tls", "sometimes"], "'sometimes' is not one of"),
    (["init", "--force", "--tls", "files"], "--tls-cert: tls files needs tls-cert"),  # a flag made it, not the file
    (["init", "--force", "--gateway-image", "bad image"], "invalid image reference"),
    (["up", "--pull", "sometimes"], "'sometimes' is not one of"),
    (["up", "--timeout", "0"], "'--timeout'"),
    (["status", "-o", "yaml"], "'yaml' is not one of"),
    (["status", "--json", "--wide"], "choose different outputs"),
    (["down", "extra"], "unexpected extra argument"),
    (["logs", "--tail", "-1"], "'--tail'"),
    (["logs", "--service", "web"], "unknown service 'web'"),
    (["audit", "--since", "yesterday"], "--since 'yesterday': give a duration"),
    (["audit", "--status", "6xx"], "--status '6xx': give an HTTP status"),
    (["audit", "--json", "--status", "40"], "--status '40'"),
    (["backup", "--timeout", "0"], "'--timeout'"),
    (["backup", "-o", "/"], "is a directory"),
    (["restore"], "Missing argument"),
    (["restore", "/nonexistent/backup.tar", "--yes"], "does not exist"),
    (["upgrade", "--yes"], "--image"),
    (["upgrade", "--image", "chromadb/chroma:0.5.0", "--yes"], "not a 1.x image"),
    (["upgrade", "--rollback", "--image", "x:1"], "--rollback takes no --image"),
    (["upgrade", "--timeout", "abc"], "'--timeout'"),
    (["doctor", "--url", "ftp://127.0.0.1:1"], "--url"),
    (["doctor", "--action", "db:drop"], "'db:drop' is not one of"),
    (["doctor", "--ca", "/nonexistent/ca.pem"], "does not exist"),
    (["doctor", "--password-stdin", "--user", "admin"], "this project uses tokens"),
    (["creds", "add", "bob", "--role", "superuser"], "unknown role 'superuser'"),
    (["creds", "add", "a b"], "invalid user name"),
    (["creds", "add", "bob", "--bcrypt-rounds", "3"], "bcrypt rounds must be a number from 4 to 14"),
    (["creds", "rotate", "admin", "--bcrypt-rounds", "99"], "bcrypt rounds must be a number from 4 to 14"),
    (["creds", "rotate", "admin", "--password-stdin"], "this project uses tokens"),
    (["creds", "rm"], "Missing argument"),
    (["creds", "list", "extra"], "unexpected extra argument"),
    (["export", "compose", "-o", "/"], "is a directory"),
    (["export", "kubernetes", "--namespace", "Bad_NS"], "invalid namespace 'Bad_NS'"),
    (["tls", "show", "extra"], "unexpected extra argument"),
    (["tls", "renew", "--new-ca=maybe"], "does not take a value"),
    (["tenant", "add", "a b"], "a tenant name is 3-63 letters"),
    (["tenant", "add", "acme", "--database", "x"], "a database name is 3-63 letters"),
    (["tenant", "add", "acme", "--database", "prod", "--database", "prod"], "a --database is named twice"),
    (["tenant", "add", "acme", "--user", "admin"], "--user is for basic auth"),
    (["tenant", "add", "--json"], "Missing argument"),
    (["tenant", "list", "extra"], "unexpected extra argument"),
]


def test_every_command_has_a_bad_value_case():
    covered = {" ".join(w for w in args if not w.startswith("-") and w in {
        "init", "up", "status", "down", "logs", "backup", "restore", "upgrade", "doctor", "creds", "add", "rotate",
        "rm", "list", "export", "compose", "kubernetes", "tls", "show", "renew", "audit",
        "tenant"}) for args, _ in BAD_VALUES}
    assert {" ".join(path) for path, _ in LEAVES} <= covered


@pytest.mark.parametrize("args, words", BAD_VALUES, ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_a_bad_value_is_a_usage_error(project, args, words):
    from conftest import snapshot

    before = snapshot(project)
    result = run_chromactl(*args, cwd=project, env=NO_ENGINE, input="")
    assert result.returncode == 2, (result.stdout, result.stderr)
    said = result.stderr + (document(result)["error"]["message"] if "--json" in args else "")
    assert words in said, said
    assert "Traceback" not in result.stderr and "docker.sock" not in said
    assert snapshot(project) == before


# --- a declined prompt: "cancelled", exit 1, no "error" ----------------------------------------


def backup_file(tmp_path: Path) -> Path:
    """A whole backup of 0.6 data (what `chromactl backup` writes), made without an engine."""
    sys.path.insert(0, str(Path(__file__).parent))
    from test_backup_checks import build_backup

    path, _, _ = build_backup(tmp_path / "made", manifest_changes={
        "records": 3, "created": "2026-12-01T00:00:00Z", "image": "chromadb/chroma:0.6.3"})
    return path


def on_a_terminal(args: list[str], cwd: Path, answer: str, env: dict | None = None) -> tuple[int, str]:
    """Run chromactl on a pseudo-terminal and answer its one question."""
    pid, fd = pty.fork()
    if pid == 0:
        os.chdir(cwd)
        for key in [k for k in os.environ if k.startswith("CHROMACTL_")]:
            del os.environ[key]
        os.environ.update({**ROUNDS, **(env or {})})
        os.execv(sys.executable, [sys.executable, "-m", "chromactl", *args])
    output, answered = b"", False
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            chunk = os.read(fd, 1024)
        except OSError:
            break
        if not chunk:
            break
        output += chunk
        if not answered and output.rstrip().endswith(b"[y/N]:"):
            os.write(fd, (answer + "\n").encode())
            answered = True
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), output.decode(errors="replace").replace("\r\n", "\n")


@pytest.fixture
def project_063(chromactl):
    ok(chromactl("init", "--host", "127.0.0.1", "--image", "chromadb/chroma:0.6.3", "--json"))
    return chromactl


def test_declining_a_restore_on_a_terminal_is_cancelled_not_an_error(project_063, tmp_path):
    from conftest import snapshot

    path = backup_file(tmp_path)
    before = snapshot(project_063.project)
    code, text = on_a_terminal(["restore", str(path)], project_063.project, "n", NO_ENGINE)
    assert code == 1, text
    assert "Replace the data of proj" in text and "[y/N]:" in text
    assert text.rstrip().endswith("cancelled: nothing was restored (pass --yes to restore without asking)")
    assert "error" not in text.lower()
    assert snapshot(project_063.project) == before


def test_without_a_terminal_nothing_is_restored_without_yes(project_063, tmp_path):
    path = backup_file(tmp_path)
    result = project_063("restore", str(path), env=NO_ENGINE)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.splitlines()[-1] == "cancelled: nothing was restored (pass --yes to restore without asking)"
    assert "error" not in result.stderr
    doc = document(project_063("restore", str(path), "--json", env=NO_ENGINE), "restore")
    assert doc["error"] == {"message": "cancelled: nothing was restored",
                            "hint": "pass --yes to restore without asking", "exit_code": 1}
    # Answering yes goes on, to the engine (absent here): the answer is what stopped it.
    yes = project_063("restore", str(path), "--yes", env=NO_ENGINE)
    assert yes.returncode == 3 and "docker.sock" in yes.stderr


def test_the_confirm_callback_asks_on_a_terminal_and_says_no_by_default(tmp_path):
    """The CLI's confirmation (cli._confirm, which restore, upgrade and down --volumes use) on a
    terminal: the question, default No; y confirms; without a terminal it is No, unasked.
    (tests/test_prompts_engine.py declines upgrade and down --volumes through the CLI.)"""
    question = "Delete chromactl-proj-data and all the data in them?"
    script = tmp_path / "ask.py"
    script.write_text("import sys\nfrom chromactl.cli import _confirm\n"
                      "print('ANSWER', _confirm(False)(sys.argv[1]))\n")
    for answer, expected in (("n", "ANSWER False"), ("", "ANSWER False"), ("y", "ANSWER True")):
        pid, fd = pty.fork()
        if pid == 0:
            os.execv(sys.executable, [sys.executable, str(script), question])
        output, answered = b"", False
        while True:
            try:
                chunk = os.read(fd, 1024)
            except OSError:
                break
            if not chunk:
                break
            output += chunk
            if not answered and output.rstrip().endswith(b"[y/N]:"):
                os.write(fd, (answer + "\n").encode())
                answered = True
        os.waitpid(pid, 0)
        assert f"{question} [y/N]:" in output.decode() and expected in output.decode(), output
    import subprocess

    piped = subprocess.run([sys.executable, str(script), question], capture_output=True, text=True,
                           stdin=subprocess.DEVNULL, timeout=60)
    assert piped.stdout.strip() == "ANSWER False" and question not in piped.stderr


@pytest.mark.parametrize("as_json", [False, True])
def test_audit_of_a_native_project_is_refused_in_one_line_without_an_engine(project_063, as_json):
    """Natively there is no audit trail (Chroma records no requests): a refusal (1), said
    before any engine is asked."""
    result = project_063("audit", *(["--json"] if as_json else []), env=NO_ENGINE)
    assert result.returncode == 1, (result.stdout, result.stderr)
    if as_json:
        assert document(result, "audit")["error"]["message"].startswith("no audit trail: this project runs Chroma "
                                                                       "natively")
    else:
        [line] = result.stderr.strip().splitlines()
        assert line.startswith("chromactl: error: no audit trail: this project runs Chroma natively") \
            and "--gateway nginx" in line and result.stdout == ""


@pytest.mark.parametrize("args", [["-C", "{p}", "status", "--json"], ["--dir", "{p}", "status", "-o", "json"],
                                  ["--dir={p}", "status", "--json"]])
def test_errors_name_the_command_even_after_the_project_folder(project, tmp_path, args):
    result = run_chromactl(*[a.format(p=project) for a in args], cwd=tmp_path, env=NO_ENGINE)
    assert result.returncode == 3
    assert document(result, "status")["error"]["exit_code"] == 3


def test_piped_output_is_100_columns_unless_columns_says_otherwise(monkeypatch):
    from chromactl.output import output_width

    monkeypatch.delenv("COLUMNS", raising=False)
    monkeypatch.setattr(sys.stdout, "isatty", lambda: False)
    assert output_width() == 100
    monkeypatch.setenv("COLUMNS", "72")
    assert output_width() == 72
