"""verify_backup's checks one by one, each in a backup that is otherwise whole (right sha256,
right fingerprint and counts): a name or link that leaves the data folder, a device, and
the damage that the manifest must catch."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import sqlite3
import tarfile
from pathlib import Path, PurePosixPath

import pytest

from chromactl import archive
from chromactl.errors import ChromactlError
from test_archive import make_sqlite


def member(name: str, kind=tarfile.REGTYPE, linkname: str = "", data: bytes = b"x") -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    return info, data


def build_backup(tmp_path, extra=(), sqlite=True, fmt=archive.FORMAT, manifest_changes=None, tamper=None, first=()):
    """A backup whose payload holds `first`, chroma.sqlite3, v1/data_level0.bin and `extra`,
    with a manifest that matches it (taken before `tamper`, SQL run on the database)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    make_sqlite(tmp_path / "src.sqlite3")
    fingerprint, collections = archive.inspect_sqlite(tmp_path / "src.sqlite3")
    if tamper:
        db = sqlite3.connect(tmp_path / "src.sqlite3")
        db.executescript(tamper)
        db.close()
    payload = tmp_path / "data.tar"
    with tarfile.open(payload, "w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in first:
            tar.addfile(info, io.BytesIO(data) if info.isfile() else None)
        if sqlite:
            tar.add(tmp_path / "src.sqlite3", arcname=archive.SQLITE)
        for info, data in (member("v1", tarfile.DIRTYPE), member("v1/data_level0.bin", data=b"\1" * 100), *extra):
            tar.addfile(info, io.BytesIO(data) if info.isfile() else None)
    manifest = {"format": fmt, "fingerprint": fingerprint, "collections": collections,
                "records": sum(c["count"] for c in collections), "image": "chromadb/chroma:0.6.3",
                "created": "2026-12-01T00:00:00+00:00",
                "payload": {"sha256": hashlib.sha256(payload.read_bytes()).hexdigest()}}
    manifest.update(manifest_changes or {})
    output = tmp_path / "backup.tar"
    archive.write_backup(output, manifest, payload, {})
    work = tmp_path / "work"
    work.mkdir()
    return output, work, manifest


def test_a_whole_backup_with_odd_but_harmless_names_passes_and_is_handed_on_normalized(tmp_path):
    output, work, manifest = build_backup(tmp_path, extra=[
        member("..hidden", data=b"dots in a name are not a parent"),
        member("v1/a..b", data=b"nor here"),
        member("./v1/deeper/", tarfile.DIRTYPE),
        member("v1//deeper/./x", data=b"x"),
        member(".", tarfile.DIRTYPE),  # the folder itself: not handed on (the volume's root keeps its mode)
    ])
    assert archive.verify_backup(output, work) == manifest
    assert (work / archive.SQLITE).exists()
    with archive.restore_payload(output, work, manifest) as payload, tarfile.open(fileobj=payload, mode="r|") as tar:
        handed = [(m.name, m.type, m.mode) for m in tar]
    assert handed == [("chroma.sqlite3", tarfile.REGTYPE, 0o644), ("v1", tarfile.DIRTYPE, 0o755),
                      ("v1/data_level0.bin", tarfile.REGTYPE, 0o644), ("..hidden", tarfile.REGTYPE, 0o644),
                      ("v1/a..b", tarfile.REGTYPE, 0o644), ("v1/deeper", tarfile.DIRTYPE, 0o755),
                      ("v1/deeper/x", tarfile.REGTYPE, 0o644)]


@pytest.mark.parametrize("name, kind", [
    ("/etc/evil", tarfile.REGTYPE),  # an absolute name
    ("/chroma.sqlite3", tarfile.REGTYPE),
    ("../evil", tarfile.REGTYPE),  # a parent
    ("v1/../../evil", tarfile.REGTYPE),
    ("v1/..", tarfile.DIRTYPE),
    ("./../evil", tarfile.REGTYPE),
    ("/.", tarfile.DIRTYPE),  # the root, not the data folder
])
def test_names_leaving_the_data_folder_are_refused(tmp_path, name, kind):
    output, work, _ = build_backup(tmp_path, extra=[member(name, kind)])
    with pytest.raises(ChromactlError, match="refusing a name that leaves the data folder") as caught:
        archive.verify_backup(output, work)
    assert repr(name) in str(caught.value)


@pytest.mark.parametrize("kind, linkname, what", [
    (tarfile.CHRTYPE, "", "a character device"),
    (tarfile.BLKTYPE, "", "a block device"),
    (tarfile.FIFOTYPE, "", "a FIFO"),
    (tarfile.SYMTYPE, "/etc/passwd", "a symbolic link"),  # leaving the folder or not: Chroma writes none
    (tarfile.SYMTYPE, "../../etc/passwd", "a symbolic link"),
    (tarfile.SYMTYPE, "data_level0.bin", "a symbolic link"),
    (tarfile.LNKTYPE, "/etc/shadow", "a hard link"),
    (tarfile.LNKTYPE, "v1/data_level0.bin", "a hard link"),
    (b"Z", "", "an entry of type b'Z'"),  # a type tar does not define
])
def test_links_devices_and_fifos_are_refused(tmp_path, kind, linkname, what):
    output, work, _ = build_backup(tmp_path, extra=[member("v1/odd", kind, linkname)])
    with pytest.raises(ChromactlError) as caught:
        archive.verify_backup(output, work)
    assert caught.value.message == (f"{output}: refusing {what}: 'v1/odd' (Chroma writes only regular files and "
                                    "folders, once each)")
    assert caught.value.hint == "nothing was changed; use another backup"


def test_a_regular_file_with_a_stray_link_name_is_only_a_file(tmp_path):
    output, work, manifest = build_backup(tmp_path, extra=[member("v1/file", tarfile.REGTYPE, "/etc/passwd")])
    assert archive.verify_backup(output, work) == manifest


def test_damage_and_lies_are_refused(tmp_path):
    output, work, _ = build_backup(tmp_path / "a", manifest_changes={"payload": {"sha256": "0" * 64}})
    with pytest.raises(ChromactlError) as caught:
        archive.verify_backup(output, work)
    assert re.fullmatch(r".*/backup\.tar is damaged: the data's sha256 is [0-9a-f]{16}\.\.\., the manifest says 0{16}\.\.\.",
                        caught.value.message), caught.value.message
    assert caught.value.hint == "nothing was changed; use another backup"
    output, work, manifest = build_backup(tmp_path / "no-payload-entry")
    manifest.pop("payload")
    archive.write_backup(output, manifest, tmp_path / "no-payload-entry" / "data.tar", {})
    with pytest.raises(ChromactlError, match="the manifest says None"):
        archive.verify_backup(output, work)
    output, work, _ = build_backup(tmp_path / "b", fmt="chromactl-backup/2")
    with pytest.raises(ChromactlError, match="unknown backup format 'chromactl-backup/2'"):
        archive.verify_backup(output, work)
    output, work, _ = build_backup(tmp_path / "c", sqlite=False)
    with pytest.raises(ChromactlError, match="holds no chroma.sqlite3"):
        archive.verify_backup(output, work)
    output, work, manifest = build_backup(tmp_path / "d", manifest_changes={"fingerprint": {"chromadb/migrations/sysdb": 1}})
    with pytest.raises(ChromactlError, match="does not match its manifest") as caught:
        archive.verify_backup(output, work)
    assert caught.value.hint == "nothing was changed; use another backup"
    output, work, manifest = build_backup(tmp_path / "e")
    manifest.pop("collections")  # the data has collections; a manifest without any lies
    archive.write_backup(output, manifest, tmp_path / "e" / "data.tar", {})
    with pytest.raises(ChromactlError, match="does not match its manifest"):
        archive.verify_backup(output, work)


def test_a_damaged_payload_is_refused_as_damaged(tmp_path, monkeypatch):
    # Cut short inside the payload: the backup's own index is broken.
    output, work, _ = build_backup(tmp_path / "a")
    data = output.read_bytes()
    (tmp_path / "cut.tar").write_bytes(data[:data.index(b"\1" * 100) + 50])
    with pytest.raises(ChromactlError, match="cut.tar is not a chromactl backup"):
        archive.verify_backup(tmp_path / "cut.tar", work)
    # The disk fails while the payload is read.
    real = tarfile.TarFile.extractfile

    def failing(self, member):
        source = real(self, member)
        if getattr(member, "name", member) == archive.PAYLOAD:
            source.read = lambda size=-1: (_ for _ in ()).throw(OSError(5, "Input/output error"))
        return source

    monkeypatch.setattr(tarfile.TarFile, "extractfile", failing)
    with pytest.raises(ChromactlError) as caught:
        archive.verify_backup(output, work)
    assert caught.value.message.endswith("backup.tar is damaged: [Errno 5] Input/output error")
    assert caught.value.hint == "use another backup"
    monkeypatch.undo()
    # A payload whose sha256 the manifest states, but that is no tar.
    (tmp_path / "b").mkdir()
    payload = tmp_path / "b" / "data.tar"
    payload.write_bytes(b"\x00garbage" * 200)
    manifest = {"format": archive.FORMAT, "payload": {"sha256": hashlib.sha256(payload.read_bytes()).hexdigest()},
                "image": "chromadb/chroma:1.5.9", "created": "2026-12-01T00:00:00+00:00"}
    archive.write_backup(tmp_path / "b" / "b.tar", manifest, payload, {})
    with pytest.raises(ChromactlError, match="is damaged: ") as caught:
        archive.verify_backup(tmp_path / "b" / "b.tar", work)
    assert caught.value.hint == "use another backup"


def test_not_a_backup(tmp_path):
    with pytest.raises(ChromactlError, match="no such backup file"):
        archive.verify_backup(tmp_path / "missing.tar", tmp_path)
    plain = tmp_path / "plain.tar"
    with tarfile.open(plain, "w") as tar:
        info, data = member("something")
        tar.addfile(info, io.BytesIO(data))
    with pytest.raises(ChromactlError, match="is not a chromactl backup .no readable"):
        archive.verify_backup(plain, tmp_path)
    bad_json = tmp_path / "bad.tar"
    with tarfile.open(bad_json, "w") as tar:
        for name, data in ((archive.MANIFEST, b"{not json"), (archive.PAYLOAD, b"")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with pytest.raises(ChromactlError, match="is not a chromactl backup"):
        archive.verify_backup(bad_json, tmp_path)


def test_backup_file_layout_and_mode(tmp_path):
    output, work, manifest = build_backup(tmp_path)
    with tarfile.open(output) as tar:
        assert tar.getnames() == [archive.MANIFEST, archive.PAYLOAD]
        assert json.load(tar.extractfile(archive.MANIFEST)) == manifest
        payload = tar.getmember(archive.PAYLOAD)
        assert (payload.mode, payload.uid, payload.gid, payload.uname, payload.gname) == (0o600, 0, 0, "", "")
    assert output.stat().st_mode & 0o777 == 0o600
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]
    with tarfile.open(output) as tar:  # a manifest a person can read
        assert tar.extractfile(archive.MANIFEST).read() == json.dumps(manifest, indent=2).encode() + b"\n"
    archive.write_backup(tmp_path / "with-files.tar", manifest, tmp_path / "data.tar", {"b.yaml": b"2", "a.yaml": b"1"})
    with tarfile.open(tmp_path / "with-files.tar") as tar:
        assert tar.getnames()[2:] == [f"{archive.PROJECT}/a.yaml", f"{archive.PROJECT}/b.yaml"]
        assert tar.extractfile(f"{archive.PROJECT}/a.yaml").read() == b"1"
        assert all(m.mode == 0o600 for m in tar.getmembers())


def test_write_backup_writes_beside_the_target_then_renames(tmp_path, monkeypatch):
    (tmp_path / "data.tar").write_bytes(b"payload")
    renamed = []
    real_replace = os.replace
    monkeypatch.setattr(archive.os, "replace", lambda src, dst: (renamed.append((src, dst)), real_replace(src, dst)))
    archive.write_backup(tmp_path / "b.tar", {}, tmp_path / "data.tar", {})
    (src, dst), = renamed
    assert Path(src).parent == tmp_path and Path(dst) == tmp_path / "b.tar"  # the same folder: an atomic rename
    assert Path(src).name.startswith(".b.tar.") and src.endswith(".partial")


def test_write_backup_failures_leave_nothing_behind(tmp_path, monkeypatch):
    with pytest.raises(ChromactlError) as caught:
        archive.write_backup(tmp_path / "b.tar", {}, tmp_path / "missing-payload.tar", {})
    assert str(caught.value) == f"cannot write {tmp_path / 'b.tar'}: no such file or directory"
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "data.tar").write_bytes(b"payload")

    def no_sync(fd):
        raise OSError("the disk went away")  # an OSError without errno

    monkeypatch.setattr(archive.os, "fsync", no_sync)
    with pytest.raises(ChromactlError) as caught:
        archive.write_backup(tmp_path / "b.tar", {}, tmp_path / "data.tar", {})
    assert str(caught.value) == f"cannot write {tmp_path / 'b.tar'}: the disk went away"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.tar"]


def test_spool_payload_relative_names_links_and_progress(tmp_path):
    make_sqlite(tmp_path / "src.sqlite3")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        top = tarfile.TarInfo("data")
        top.type = tarfile.DIRTYPE
        tar.addfile(top)
        tar.add(tmp_path / "src.sqlite3", arcname="data/chroma.sqlite3")
        for info, data in (member("data/v1", tarfile.DIRTYPE), member("data/v1/x.bin", data=b"abc"),
                           member("data/v1/hard", tarfile.LNKTYPE, "data/v1/x.bin"),
                           member("data/v1/sym", tarfile.SYMTYPE, "x.bin")):
            tar.addfile(info, io.BytesIO(data) if info.isfile() else None)
    stream = buffer.getvalue()
    seen = []
    sha, size = archive.spool_payload([stream[i:i + 1000] for i in range(0, len(stream), 1000)],
                                      tmp_path / "p.tar", tmp_path / "copy.sqlite3", seen.append)
    assert seen == sorted(seen) and seen[-1] == len(stream) and len(seen) == -(-len(stream) // 1000)
    assert sha == hashlib.sha256((tmp_path / "p.tar").read_bytes()).hexdigest() and size == (tmp_path / "p.tar").stat().st_size
    assert (tmp_path / "copy.sqlite3").read_bytes() == (tmp_path / "src.sqlite3").read_bytes()
    with tarfile.open(tmp_path / "p.tar") as tar:
        assert tar.getnames() == ["chroma.sqlite3", "v1", "v1/x.bin", "v1/hard", "v1/sym"]
        assert tar.getmember("v1/hard").linkname == "v1/x.bin" and tar.getmember("v1/sym").linkname == "x.bin"
        assert tar.extractfile("v1/x.bin").read() == b"abc"
        assert tar.extractfile("chroma.sqlite3").read() == (tmp_path / "src.sqlite3").read_bytes()


def test_inspect_sqlite_refuses_what_is_not_chroma(tmp_path):
    (tmp_path / "junk.sqlite3").write_bytes(b"not a database at all" * 50)
    with pytest.raises(ChromactlError, match="not a Chroma database"):
        archive.inspect_sqlite(tmp_path / "junk.sqlite3")
    with pytest.raises(ChromactlError, match="cannot open chroma.sqlite3|not a Chroma database"):
        archive.inspect_sqlite(tmp_path / "missing" / "x.sqlite3")


def test_a_database_that_sqlite_cannot_open_ends_in_one_line(tmp_path):
    make_sqlite(tmp_path / "chroma.sqlite3")
    deep = tmp_path.joinpath(*["d" * 200] * 6)  # longer than the paths SQLite opens, not than Linux's
    deep.mkdir(parents=True)
    os.rename(tmp_path / "chroma.sqlite3", deep / "chroma.sqlite3")
    with pytest.raises(ChromactlError) as caught:
        archive.inspect_sqlite(deep / "chroma.sqlite3")
    assert caught.value.message == "cannot open chroma.sqlite3: unable to open database file"


def test_extract_single_and_chunk_reader(tmp_path):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for info, data in (member("dir", tarfile.DIRTYPE), member("dir/one", data=b"first" * 1000),
                           member("dir/two", data=b"second")):
            tar.addfile(info, io.BytesIO(data) if info.isfile() else None)
    stream = buffer.getvalue()
    archive.extract_single([stream[i:i + 333] for i in range(0, len(stream), 333)], tmp_path / "out")
    assert (tmp_path / "out").read_bytes() == b"first" * 1000
    empty = io.BytesIO()
    with tarfile.open(fileobj=empty, mode="w") as tar:
        info, _ = member("only-a-dir", tarfile.DIRTYPE)
        tar.addfile(info)
    with pytest.raises(ChromactlError, match="^the engine's archive held no file$"):
        archive.extract_single([empty.getvalue()], tmp_path / "none")
    reader = archive.ChunkReader([b"ab", b"", b"cde"])
    assert reader.readable() and reader.read() == b"abcde" and reader.total == 5
    small, seen = archive.ChunkReader([b"abcde", b"fg"], on_bytes=lambda n: seen.append(n)), []
    assert [small.read(2) for _ in range(5)] == [b"ab", b"cd", b"e", b"fg", b""]  # never past a chunk's end
    assert seen == [5, 7]


def test_the_hashing_writer_is_a_writable_raw_stream(tmp_path):
    with open(tmp_path / "out", "wb") as handle:
        writer = archive._HashingWriter(handle)
        buffered = io.BufferedWriter(writer)  # refuses a raw stream that says it is not writable
        buffered.write(b"abc")
        buffered.flush()
    assert writer.size == 3 and writer.sha256.hexdigest() == hashlib.sha256(b"abc").hexdigest()
    assert (tmp_path / "out").read_bytes() == b"abc"


def test_the_hashing_reader_is_a_readable_raw_stream():
    reader = archive._HashingReader(io.BytesIO(b"abc" * 5000))
    buffered = io.BufferedReader(reader, 1000)  # refuses a raw stream that says it is not readable
    assert buffered.read() == b"abc" * 5000
    assert reader.sha256.hexdigest() == hashlib.sha256(b"abc" * 5000).hexdigest()


def test_counts_of():
    assert archive.counts_of([{"tenant": "t", "database": "d", "name": "c", "count": 3}]) == {"t/d/c": 3}


def test_a_volume_without_chroma_sqlite3_says_what_to_check(tmp_path):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info, data = member("data/other")
        tar.addfile(info, io.BytesIO(data))
    with pytest.raises(ChromactlError) as caught:
        archive.spool_payload([buffer.getvalue()], tmp_path / "p.tar", tmp_path / "c.sqlite3")
    assert caught.value.message == "the data volume holds no chroma.sqlite3: nothing that Chroma wrote"
    assert caught.value.hint == "has the server ever run on it? `chromactl status` names the volume"


def handed(output, work, manifest) -> list[tarfile.TarInfo]:
    """The headers restore_payload hands the engine for a backup that verify_backup passed."""
    assert archive.verify_backup(output, work) == manifest
    with archive.restore_payload(output, work, manifest) as payload, tarfile.open(fileobj=payload, mode="r|") as tar:
        return list(tar)


def test_ordinary_modes_of_files_and_folders_pass(tmp_path):
    modes = [("v1/rwx", tarfile.DIRTYPE, 0o777), ("v1/rwx/exe", tarfile.REGTYPE, 0o755),
             ("v1/private", tarfile.REGTYPE, 0o600), ("v1/all", tarfile.REGTYPE, 0o777)]
    extra = []
    for name, kind, mode in modes:
        info, data = member(name, kind)
        info.mode = mode
        extra.append((info, data))
    output, work, manifest = build_backup(tmp_path, extra=extra)
    assert [(m.name, m.mode) for m in handed(output, work, manifest)][-4:] == [
        ("v1/rwx", 0o755), ("v1/rwx/exe", 0o644), ("v1/private", 0o644), ("v1/all", 0o644)]


@pytest.mark.parametrize("top", [".", "./", ""])
def test_a_payload_that_starts_with_its_own_folder_is_handed_on_whole(tmp_path, top):
    """As `tar -C data .` writes it: the folder itself first, then what it holds."""
    output, work, manifest = build_backup(tmp_path, first=[member(top, tarfile.DIRTYPE)])
    assert [m.name for m in handed(output, work, manifest)] == ["chroma.sqlite3", "v1", "v1/data_level0.bin"]


def test_a_folder_is_handed_on_with_no_data_whatever_its_header_claims(tmp_path):
    folder, _ = member("v1/claims", tarfile.DIRTYPE)
    folder.size = 4096  # Python's tarfile and Go's skip no data after a folder; other readers would
    output, work, manifest = build_backup(tmp_path, extra=[(folder, b""), member("v1/after", data=b"after")])
    claims, after = handed(output, work, manifest)[-2:]
    assert (claims.name, claims.type, claims.size) == ("v1/claims", tarfile.DIRTYPE, 0)
    assert (after.name, after.size) == ("v1/after", 5)


@pytest.mark.parametrize("mtime, kept", [
    (0, 0),
    (1, 1),
    (1.9, 1),  # whole seconds
    (1_700_000_000, 1_700_000_000),
    (8 ** 11 - 1, 8 ** 11 - 1),  # the largest time the tar header holds itself
    (8 ** 11, 0),  # would need a PAX record: dropped
    (-1, 0),
])
def test_a_members_time_is_handed_on_when_the_tar_header_holds_it_else_zero(tmp_path, mtime, kept):
    info, data = member("v1/timed")
    info.mtime = mtime
    output, work, manifest = build_backup(tmp_path, extra=[(info, data)])
    timed = handed(output, work, manifest)[-1]
    assert (timed.name, timed.mtime, timed.pax_headers) == ("v1/timed", kept, {})


def test_the_stream_handed_on_ends_with_the_end_of_archive_marker_and_nothing_after(tmp_path):
    output, work, manifest = build_backup(tmp_path, extra=[member("v1/odd-size", data=b"o" * 700)])
    assert archive.verify_backup(output, work) == manifest
    with archive.restore_payload(output, work, manifest) as payload:
        stream = payload.read()
    with tarfile.open(fileobj=io.BytesIO(stream), mode="r:") as tar:
        assert tar.getnames()[-1] == "v1/odd-size"
        end = tar.offset  # where the first zero block stands
    assert stream[end:] == bytes(2 * tarfile.BLOCKSIZE)


def test_bytes_after_the_payloads_end_count_in_its_sha256(tmp_path):
    output, work, manifest = build_backup(tmp_path)
    payload = tmp_path / "data.tar"
    with open(payload, "ab") as handle:
        handle.write(b"trailer" * 20_000)  # past the tar's end: no member reads them
    archive.write_backup(output, manifest, payload, {})
    with pytest.raises(ChromactlError, match="is damaged: the data's sha256 is"):
        archive.verify_backup(output, work)
    manifest["payload"] = {"sha256": hashlib.sha256(payload.read_bytes()).hexdigest()}
    archive.write_backup(output, manifest, payload, {})
    assert archive.verify_backup(output, work) == manifest


def test_a_member_below_a_top_level_file_is_refused(tmp_path):
    output, work, _ = build_backup(tmp_path, extra=[member("top.bin"), member("top.bin/inside")])
    with pytest.raises(ChromactlError) as caught:
        archive.verify_backup(output, work)
    assert caught.value.message.startswith(f"{output}: refusing a member below a file: 'top.bin/inside'")


def relinked(tmp_path, output, name) -> Path:
    """`output` written again with member `name` as a link to a regular copy of itself."""
    copy = f"{archive.ROOT}/copy-of-{PurePosixPath(name).name}"
    relinked = tmp_path / f"linked-{PurePosixPath(name).name}.tar"
    with tarfile.open(output) as source, tarfile.open(relinked, "w", format=tarfile.PAX_FORMAT) as target:
        for info in source.getmembers():
            data = source.extractfile(info).read()
            if info.name == name:
                regular = tarfile.TarInfo(copy)
                regular.size = len(data)
                target.addfile(regular, io.BytesIO(data))
                info = tarfile.TarInfo(name)
                info.type, info.linkname = tarfile.SYMTYPE, PurePosixPath(copy).name
            target.addfile(info, io.BytesIO(data) if info.isfile() else None)
    return relinked


@pytest.mark.parametrize("name", [archive.MANIFEST, archive.PAYLOAD])
def test_a_manifest_or_payload_that_is_a_link_is_no_backup(tmp_path, name):
    """chromactl writes both as regular files; through a link one member would be read twice."""
    output, work, manifest = build_backup(tmp_path)
    linked = relinked(tmp_path, output, name)
    with tarfile.open(linked) as tar:  # what the link leads to is a whole backup's
        assert tar.getmember(name).issym() and json.load(tar.extractfile(archive.MANIFEST)) == manifest
    with pytest.raises(ChromactlError) as caught:
        archive.verify_backup(linked, work)
    assert caught.value.message == (f"{linked} is not a chromactl backup (no readable {archive.MANIFEST} "
                                    f"and {archive.PAYLOAD})")


def test_a_manifest_is_read_up_to_its_size_limit_and_not_a_byte_more(tmp_path, monkeypatch):
    output, work, manifest = build_backup(tmp_path)
    with tarfile.open(output) as tar:
        size = tar.getmember(archive.MANIFEST).size
    monkeypatch.setattr(archive, "MANIFEST_LIMIT", size)
    assert archive.verify_backup(output, work) == manifest
    monkeypatch.setattr(archive, "MANIFEST_LIMIT", size - 1)
    with pytest.raises(ChromactlError, match="is not a chromactl backup .no readable"):
        archive.verify_backup(output, work)


def test_a_restore_whose_backup_turns_to_garbage_names_the_file(tmp_path):
    output, work, manifest = build_backup(tmp_path / "a")
    assert archive.verify_backup(output, work) == manifest
    garbage = tmp_path / "garbage.tar"
    garbage.write_bytes(b"\x00garbage" * 2000)
    archive.write_backup(output, manifest, garbage, {})  # swapped while the volume is being filled
    with pytest.raises(ChromactlError) as caught:
        with archive.restore_payload(output, work, manifest) as payload:
            payload.read()
    assert caught.value.message.startswith(f"{output} is damaged: ")
    assert caught.value.hint == "use another backup"


@pytest.mark.parametrize("size, returned", [(5, b"x" * 5), (6, None)])
def test_extract_bytes_returns_a_file_of_at_most_its_limit(size, returned):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for info, data in (member("dir", tarfile.DIRTYPE), member("dir/file", data=b"x" * size)):
            tar.addfile(info, io.BytesIO(data) if info.isfile() else None)
    assert archive.extract_bytes([buffer.getvalue()], limit=5) == returned
