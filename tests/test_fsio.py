"""fsio.write_files: every file or none, even when a rename fails part-way."""

import os

import pytest

from chromactl import fsio
from chromactl.errors import ChromactlError


def test_all_files_written_with_their_modes(tmp_path):
    fsio.write_files({tmp_path / "a": ("one\n", 0o600), tmp_path / "b": ("two\n", 0o644)})
    assert (tmp_path / "a").read_text() == "one\n" and (tmp_path / "b").read_text() == "two\n"
    assert (tmp_path / "a").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "b").stat().st_mode & 0o777 == 0o644


def test_a_rename_failing_part_way_puts_back_what_it_replaced(tmp_path):
    (tmp_path / "a").write_text("old a\n")
    (tmp_path / "c").write_text("old c\n")
    in_the_way = tmp_path / "b"
    in_the_way.mkdir()
    (in_the_way / "keep").write_text("x")  # os.replace cannot put a file over a non-empty folder
    files = {tmp_path / "a": ("new a\n", 0o600), tmp_path / "new": ("brand new\n", 0o600),
             in_the_way: ("new b\n", 0o600), tmp_path / "c": ("new c\n", 0o600)}
    with pytest.raises(ChromactlError, match=f"cannot write {in_the_way}"):
        fsio.write_files(files)
    assert (tmp_path / "a").read_text() == "old a\n"  # replaced, then put back
    assert not (tmp_path / "new").exists()  # created, then taken away
    assert (tmp_path / "c").read_text() == "old c\n"  # never reached
    assert sorted(os.listdir(tmp_path)) == ["a", "b", "c"]  # no temporary or kept files left


def test_an_unwritable_folder_changes_nothing(tmp_path):
    missing = tmp_path / "no-such-folder" / "f"
    (tmp_path / "a").write_text("old\n")
    with pytest.raises(ChromactlError, match="cannot write"):
        fsio.write_files({tmp_path / "a": ("new\n", 0o600), missing: ("x", 0o600)})
    assert (tmp_path / "a").read_text() == "old\n"
    assert os.listdir(tmp_path) == ["a"]


# --- a run killed between two renames; links planted in a project -------------------------

KILL_BETWEEN_RENAMES = """
import os, signal, sys
from pathlib import Path
from chromactl import fsio
root = Path(sys.argv[1])
real_replace = os.replace
count = [0]
def replace(src, dst):
    real_replace(src, dst)
    count[0] += 1
    if str(dst).startswith(str(root)) and not str(dst).startswith(str(root / ".chromactl")) and count[0] >= 2:
        os.kill(os.getpid(), signal.SIGKILL)  # after the first file's rename: a power cut, say
os.replace = replace
fsio.write_files({root / "authz.yaml": ("users: [new]\\n", 0o600), root / "server.htpasswd": ("new\\n", 0o600)}, root)
"""


def test_a_run_killed_between_renames_leaves_no_secret_behind_and_the_next_run_finishes_it(tmp_path):
    import subprocess
    import sys

    root = tmp_path / "proj"
    root.mkdir()
    (root / "authz.yaml").write_text("users: [old]\n")
    (root / "server.htpasswd").write_text("old\n")
    killed = subprocess.run([sys.executable, "-c", KILL_BETWEEN_RENAMES, str(root)], capture_output=True)
    assert killed.returncode == -9, killed.stderr
    # One file renamed, the other not; nothing secret beside them where `git add .` would take it.
    assert (root / "authz.yaml").read_text() == "users: [new]\n" and (root / "server.htpasswd").read_text() == "old\n"
    assert sorted(p.name for p in root.iterdir()) == [".chromactl", "authz.yaml", "server.htpasswd"]
    # The next write or lock under the project finishes what was started.
    with fsio.locked(root / ".chromactl" / "lock", root=root):
        pass
    assert (root / "server.htpasswd").read_text() == "new\n"
    assert sorted(os.listdir(root / ".chromactl" / "tmp")) == []


@pytest.mark.parametrize("plant", [".chromactl/gateway", ".chromactl/lock", ".chromactl/tls", ".chromactl"])
def test_a_planted_link_is_refused_and_its_target_untouched(tmp_path, plant):
    root = tmp_path / "proj"
    (root / ".chromactl").mkdir(parents=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    link = root / plant
    if link.exists():
        link.rmdir()
    target = elsewhere / "nologin" if plant.endswith("lock") else elsewhere
    link.symlink_to(target)
    with pytest.raises(fsio.UnsafePath, match="symbolic link"):
        with fsio.locked(root / ".chromactl" / "lock", root=root):
            fsio.ensure_dir(root / ".chromactl" / "gateway", 0o700, root=root)
            fsio.write_files({root / ".chromactl" / "gateway" / "nginx.conf": ("secret\n", 0o600)}, root)
            fsio.write_files({root / ".chromactl" / "tls" / "ca.key": ("key\n", 0o600)}, root)
    assert list(elsewhere.iterdir()) == []  # nothing written, created or chowned there


def test_reading_a_fifo_in_a_project_is_refused_not_a_hang(tmp_path):
    root = tmp_path / "proj"
    root.mkdir()
    os.mkfifo(root / "authz.yaml")
    with pytest.raises(fsio.UnsafePath, match="not a regular file"):
        fsio.read_text(root / "authz.yaml", root)
