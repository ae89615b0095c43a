import json
import subprocess
import sys

import pytest
import yaml

from conftest import htpasswd_binary, ok, snapshot, document

ROUNDS = {"CHROMACTL_BCRYPT_ROUNDS": "10"}  # keep basic-auth tests quick; cost 12 is the tested default elsewhere


def users(project):
    return {u["id"]: u for u in yaml.safe_load((project / "authz.yaml").read_text())["users"]}


@pytest.fixture
def token_project(chromactl):
    ok(chromactl("init"))
    return chromactl


@pytest.fixture
def basic_project(chromactl):
    # Native (Chroma 0.6 checks bcrypt): Apache's htpasswd can check every line.
    ok(chromactl("init", "--auth", "basic", "--image", "chromadb/chroma:0.6.3", env=ROUNDS))
    return chromactl


def test_add_token_user_defaults_to_reader(token_project):
    doc = document(ok(token_project("creds", "add", "alice", "--json")))
    assert doc["user"] == "alice" and doc["role"] == "reader"
    assert users(token_project.project)["alice"] == {"id": "alice", "role": "reader", "tokens": [doc["secret"]]}


def test_add_token_from_stdin(token_project):
    token = "Imported-Token_0123456789!"
    ok(token_project("creds", "add", "svc", "--role", "writer", "--token-stdin", input=token + "\n"))
    assert users(token_project.project)["svc"]["tokens"] == [token]


def test_generated_secret_is_printed_once_and_never_on_stderr(token_project):
    result = ok(token_project("creds", "add", "alice"))
    token = users(token_project.project)["alice"]["tokens"][0]
    assert result.stdout.count(token) == 1 and token not in result.stderr


def test_list_shows_no_secret(token_project):
    ok(token_project("creds", "add", "alice", "--role", "writer"))
    result = ok(token_project("creds", "list", "--json"))
    listed = document(result, "creds list")["users"]
    assert [(u["user"], u["role"], u["tokens"]) for u in listed] == [
        ("chromactl-probe", "chromactl-probe", 1), ("admin", "admin", 1), ("alice", "writer", 1)]
    for user in users(token_project.project).values():
        assert user["tokens"][0] not in result.stdout
    human = ok(token_project("creds", "list"))
    assert "alice" in human.stdout and "writer" in human.stdout


def test_rotate_replaces_the_token(token_project):
    old = users(token_project.project)["admin"]["tokens"]
    doc = document(ok(token_project("creds", "rotate", "admin", "--json")))
    assert users(token_project.project)["admin"]["tokens"] == [doc["secret"]] != old


def test_rotating_the_probe_updates_its_secret_file(token_project):
    doc = document(ok(token_project("creds", "rotate", "chromactl-probe", "--json")))
    assert (token_project.project / ".chromactl/probe-secret").read_text().strip() == doc["secret"]


def test_rm(token_project):
    ok(token_project("creds", "add", "alice"))
    ok(token_project("creds", "rm", "alice"))
    assert "alice" not in users(token_project.project)


def test_basic_add_with_password_stdin_verified_by_apache_htpasswd(basic_project):
    htpasswd = htpasswd_binary()
    ok(basic_project("creds", "add", "alice", "--role", "writer", "--password-stdin", input="pa:ss wörd, long enough\n", env=ROUNDS))
    doc = document(ok(basic_project("creds", "add", "bob", "--json", env=ROUNDS)))
    assert doc["role"] == "reader"
    path = basic_project.project / "server.htpasswd"
    for user, password, expected in (("alice", "pa:ss wörd, long enough", 0), ("bob", doc["secret"], 0), ("alice", "wrong", 3)):
        check = subprocess.run([htpasswd, "-v", "-i", str(path), user], input=password, capture_output=True, text=True)
        assert check.returncode == expected, check.stderr
    assert users(basic_project.project)["alice"] == {"id": "alice", "role": "writer"}


def test_bcrypt_costs_generated_4_chosen_6_and_apache_accepts_them(chromactl):
    """A generated password is strong by its randomness: the cheapest cost, since basic auth
    pays the hash on every request. A chosen one gets the project's cost, 6 by default.
    (Natively: Chroma 0.6 checks bcrypt only. Behind the gateway see the next test.)"""
    htpasswd = htpasswd_binary()
    doc = document(ok(chromactl("init", "--auth", "basic", "--image", "chromadb/chroma:0.6.3", "--json")))
    ok(chromactl("creds", "add", "carol", "--password-stdin", "--no-apply", input="carol chose this one\n"))
    lines = dict(l.split(":", 1) for l in (chromactl.project / "server.htpasswd").read_text().splitlines())
    assert lines["admin"].startswith("$2b$04$") and lines["chromactl-probe"].startswith("$2b$04$")
    assert lines["carol"].startswith("$2b$06$")
    for user, password in (("admin", doc["secret"]), ("carol", "carol chose this one")):
        check = subprocess.run([htpasswd, "-v", "-i", str(chromactl.project / "server.htpasswd"), user],
                               input=password, capture_output=True, text=True)
        assert check.returncode == 0, check.stderr


def test_passwords_behind_the_gateway_use_salted_sha1_and_natively_are_refused(chromactl):
    """nginx checks {SSHA} in microseconds: a wrong password then costs what an unknown name
    costs (no oracle, nothing for strangers to burn). Chroma 0.6 cannot check it, so a
    project turned native must re-hash such users."""
    ok(chromactl("init", "--auth", "basic", "--image", "chromadb/chroma:1.5.9"))
    ok(chromactl("creds", "add", "carol", "--password-stdin", "--no-apply", input="carol chose this one\n"))
    lines = dict(l.split(":", 1) for l in (chromactl.project / "server.htpasswd").read_text().splitlines())
    assert lines["admin"].startswith("{SSHA}") and lines["chromactl-probe"].startswith("{SSHA}")
    assert lines["carol"].startswith("{SSHA}")  # chosen too: the gateway checks it
    result = chromactl("init", "--force", "--image", "chromadb/chroma:0.6.3")
    assert result.returncode == 1 and "server.htpasswd" in result.stderr and "creds rotate" in result.stderr


def test_bcrypt_rounds_flag_over_env(basic_project):
    ok(basic_project("creds", "add", "alice", "--bcrypt-rounds", "11", "--password-stdin", env=ROUNDS,
                     input="alice chose this one"))
    line = next(l for l in (basic_project.project / "server.htpasswd").read_text().splitlines() if l.startswith("alice:"))
    assert line.split(":")[1].startswith("$2b$11$")


def test_role_without_rbac_warns_that_it_changes_nothing(chromactl):
    ok(chromactl("init", "--no-rbac"))
    result = ok(chromactl("creds", "add", "alice", "--role", "reader", "--json"))
    assert "RBAC is off" in result.stderr and "full access" in result.stderr
    assert document(result)["role"] == "admin"
    assert "role" not in users(chromactl.project)["alice"]


def test_bad_input_changes_nothing(token_project):
    ok(token_project("creds", "add", "alice"))
    before = snapshot(token_project.project)
    # Exit 2: a value that cannot be used (usage); exit 1: a refused operation.
    cases = [
        (["creds", "add", ""], None, "empty", 2),
        (["creds", "add", "a:b"], None, "':'", 2),
        (["creds", "add", "a b"], None, "whitespace", 2),
        (["creds", "add", "a\x07b"], None, "control characters", 2),
        (["creds", "add", "alice"], None, "already exists", 1),
        (["creds", "add", "chromactl-probe"], None, "reserved", 2),
        (["creds", "add", "bob", "--role", "root"], None, "unknown role 'root'", 2),
        (["creds", "add", "bob", "--token-stdin"], "has space in it 1234567\n", "letters, digits and punctuation", 2),
        (["creds", "add", "bob", "--token-stdin"], "", "standard input is empty", 2),
        (["creds", "add", "bob", "--password-stdin"], "secret\n", "this project uses tokens", 2),
        (["creds", "add", "bob", "--token-stdin"], "a" * 20 + "\n" + "b" * 20 + "\n", "one line", 2),
        (["creds", "rm", "nobody"], None, "no user 'nobody'", 1),
        (["creds", "rotate", "nobody"], None, "no user 'nobody'", 1),
        (["creds", "rm", "admin"], None, "last admin", 1),
        (["creds", "rm", "chromactl-probe"], None, "cannot be removed", 1),
    ]
    for args, stdin, message, code in cases:
        result = token_project(*args, input=stdin)
        assert result.returncode == code, (args, result.stderr)
        assert message in result.stderr, (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert result.stdout == ""
        assert snapshot(token_project.project) == before, args


def test_token_in_use_is_refused_without_echoing_it(token_project):
    token = users(token_project.project)["admin"]["tokens"][0]
    result = token_project("creds", "add", "bob", "--token-stdin", input=token)
    assert result.returncode == 1 and "already in use" in result.stderr and token not in result.stderr


def test_basic_bad_input(basic_project):
    before = snapshot(basic_project.project)
    for args, stdin, message in [
        (["creds", "add", "bob", "--password-stdin"], "", "standard input is empty"),
        (["creds", "add", "bob", "--password-stdin"], "x" * 80, "at most 72 bytes"),
        (["creds", "add", "bob", "--token-stdin"], "a" * 20, "this project uses basic auth"),
    ]:
        result = basic_project(*args, input=stdin)
        assert result.returncode == 2 and message in result.stderr, (args, result.stderr)
        assert snapshot(basic_project.project) == before


def test_no_project_and_auth_none(chromactl):
    result = chromactl("creds", "list")
    assert result.returncode == 1 and "no chromactl project" in result.stderr and "chromactl init" in result.stderr
    ok(chromactl("init", "--auth", "none"))
    result = chromactl("creds", "add", "alice")
    assert result.returncode == 1 and "auth none" in result.stderr


@pytest.mark.parametrize("filename, edit, message", [
    ("authz.yaml", lambda t: t.replace("role: reader", "role: superuser"), "authz.yaml:"),
    ("authz.yaml", lambda t: t + "  - {oops\n", "authz.yaml:"),
    ("chromactl.yaml", lambda t: t.replace("port: 8000", "port: 99999"), "chromactl.yaml:"),
    ("chromactl.yaml", lambda t: t + "colour: blue\n", "unknown setting 'colour'"),
])
def test_hand_edited_files_are_reported_with_file_and_line(token_project, filename, edit, message):
    ok(token_project("creds", "add", "alice"))
    path = token_project.project / filename
    path.write_text(edit(path.read_text()))
    before = snapshot(token_project.project)
    for args in (["creds", "list"], ["creds", "add", "bob"], ["creds", "rotate", "alice"]):
        result = token_project(*args)
        assert result.returncode == 1 and message in result.stderr, (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1
        assert snapshot(token_project.project) == before


def test_broken_htpasswd_is_reported_with_its_line(basic_project):
    path = basic_project.project / "server.htpasswd"
    path.write_text(path.read_text() + "mallory\n")
    result = basic_project("creds", "list")
    assert result.returncode == 1 and "server.htpasswd:3:" in result.stderr


def test_concurrent_adds_all_land(token_project):
    names = [f"user{i}" for i in range(8)]
    command = [sys.executable, "-m", "chromactl", "creds", "add"]
    processes = [subprocess.Popen(command + [name], cwd=token_project.project, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, stdin=subprocess.DEVNULL) for name in names]
    for process in processes:
        _, err = process.communicate(timeout=60)
        assert process.returncode == 0, err
    assert set(names) <= set(users(token_project.project))


def test_concurrent_basic_adds_all_land(basic_project):
    names = [f"user{i}" for i in range(4)]
    processes = [subprocess.Popen([sys.executable, "-m", "chromactl", "creds", "add", name], cwd=basic_project.project,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                  env={**__import__("os").environ, **ROUNDS}) for name in names]
    for process in processes:
        _, err = process.communicate(timeout=60)
        assert process.returncode == 0, err
    text = (basic_project.project / "server.htpasswd").read_text()
    assert all(f"\n{name}:" in text for name in names)
    assert set(names) <= set(users(basic_project.project))


def test_password_prompt_on_a_terminal(basic_project):
    """A real terminal (pty): asks twice, hidden, and refuses a mismatch."""
    import os
    import pty
    import termios
    import time

    def wait_for_hidden_input(fd: int) -> None:
        # getpass flushes pending input when it turns echo off: answer only after that.
        deadline = time.monotonic() + 30
        while termios.tcgetattr(fd)[3] & termios.ECHO and time.monotonic() < deadline:
            time.sleep(0.02)

    def run_with_tty(answers: list[str]) -> tuple[int, str]:
        pid, fd = pty.fork()
        if pid == 0:
            os.chdir(basic_project.project)
            os.environ.update(ROUNDS)
            os.execv(sys.executable, [sys.executable, "-m", "chromactl", "creds", "add", "carol"])
        output = b""
        pending = list(answers)
        while True:
            try:
                chunk = os.read(fd, 1024)
            except OSError:
                break
            if not chunk:
                break
            output += chunk
            if pending and chunk.rstrip().endswith(b":"):
                wait_for_hidden_input(fd)
                os.write(fd, (pending.pop(0) + "\n").encode())
        _, status = os.waitpid(pid, 0)
        return os.waitstatus_to_exitcode(status), output.decode(errors="replace")

    code, text = run_with_tty(["typed-pass-long-enough", "typed-pass-long-enough"])
    assert code == 0, text
    assert "typed-pass-long-enough" not in text  # hidden input, and a typed password is not echoed back
    check = subprocess.run([htpasswd_binary(), "-v", "-i", str(basic_project.project / "server.htpasswd"), "carol"],
                           input="typed-pass-long-enough", capture_output=True, text=True)
    assert check.returncode == 0


def test_single_op_runs_without_project_lock_leftovers(token_project):
    ok(token_project("creds", "add", "x1"))
    assert not list(token_project.project.glob(".*.tmp"))

