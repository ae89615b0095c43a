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
