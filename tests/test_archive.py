"""The backup format and the data fingerprints, without Docker: a data folder as the engine
streams it (top entry: the folder), a chroma.sqlite3 with the tables Chroma writes."""

import io
import sqlite3
import tarfile

import pytest

from chromactl import archive
from chromactl.errors import ChromactlError
from chromactl.fingerprint import CHROMA_06, CHROMA_1X, compare, expected_release, is_upgrade, release_of


def make_sqlite(path, migrations=CHROMA_06.fingerprint, records=3):
    """A chroma.sqlite3 as Chroma writes it: the schema measured on the release of `migrations`
    (1.x's when no release has them), two collections and `records` records."""
    db = sqlite3.connect(path)
    for kind, name, table, sql in sorted((release_of(migrations) or CHROMA_1X).schema, key=lambda row: row[0] != "table"):
        if sql and not name.startswith("embedding_fulltext_search_"):  # fts5 makes those tables itself
            db.execute(sql)
    db.executescript("""
        INSERT INTO tenants VALUES ('default_tenant');
        INSERT INTO databases VALUES ('db', 'default_database', 'default_tenant');
        INSERT INTO collections (id, name, dimension, database_id) VALUES ('c1', 'docs', 3, 'db'), ('c2', 'empty', 3, 'db');
        INSERT INTO segments VALUES ('m1', 'sqlite', 'METADATA', 'c1'), ('v1', 'hnsw', 'VECTOR', 'c1'),
                                    ('m2', 'sqlite', 'METADATA', 'c2');
    """)
    for folder, top in migrations.items():
        db.executemany("INSERT INTO migrations VALUES (?, ?, ?, '', '')",
                       [(folder, v, f"{v:05}-{folder}.sql") for v in range(1, top + 1)])
    db.executemany("INSERT INTO embeddings (segment_id, embedding_id, seq_id) VALUES ('m1', ?, ?)",
                   [(f"id{i}", i) for i in range(records)])
    db.commit()
    db.close()


def engine_stream(tmp_path, top="data", extra=()):
    """A tar of a data folder as the engine's get_archive gives it, in chunks."""
    make_sqlite(tmp_path / "src.sqlite3")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        folder = tarfile.TarInfo(top)
        folder.type = tarfile.DIRTYPE
        tar.addfile(folder)
        tar.add(tmp_path / "src.sqlite3", arcname=f"{top}/chroma.sqlite3")
        segment = b"\x01" * 5000
        info = tarfile.TarInfo(f"{top}/v1/data_level0.bin")
        info.size = len(segment)
        tar.addfile(info, io.BytesIO(segment))
        for name, content in extra:
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    data = buffer.getvalue()
    return [data[i:i + 777] for i in range(0, len(data), 777)]


def backup_file(tmp_path, **kwargs):
    payload, copy = tmp_path / "data.tar", tmp_path / "copy.sqlite3"
    sha, size = archive.spool_payload(engine_stream(tmp_path, **kwargs), payload, copy)
    fingerprint, collections = archive.inspect_sqlite(copy)
    manifest = {"format": archive.FORMAT, "fingerprint": fingerprint, "collections": collections,
                "payload": {"sha256": sha, "bytes": size}, "records": 3, "image": "chromadb/chroma:0.6.3",
                "created": "2026-12-01T00:00:00+00:00"}
    output = tmp_path / "b.tar"
    archive.write_backup(output, manifest, payload, {})
    return output, manifest


def test_round_trip_relative_names_counts_and_mode(tmp_path):
    output, manifest = backup_file(tmp_path, top="chroma")
    assert oct(output.stat().st_mode & 0o777) == "0o600"
    assert manifest["fingerprint"] == CHROMA_06.fingerprint
    assert archive.counts_of(manifest["collections"]) == {"default_tenant/default_database/docs": 3,
                                                          "default_tenant/default_database/empty": 0}
    work = tmp_path / "work"
    work.mkdir()
    assert archive.verify_backup(output, work) == manifest
    with archive.restore_payload(output, work, manifest) as payload, tarfile.open(fileobj=payload, mode="r|") as tar:
        assert [(m.name, m.mode, m.uid, m.gid) for m in tar] == [("chroma.sqlite3", 0o644, 0, 0),
                                                                ("v1/data_level0.bin", 0o644, 0, 0)]


def test_tampered_manifest_or_payload_is_refused(tmp_path):
    output, manifest = backup_file(tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    data = bytearray(output.read_bytes())
    at = data.index(b"\x01" * 100)
    data[at:at + 8] = b"\x02" * 8
    (tmp_path / "bad.tar").write_bytes(bytes(data))
    with pytest.raises(ChromactlError, match="damaged"):
        archive.verify_backup(tmp_path / "bad.tar", work)
    # A manifest that lies about the counts (its sha256 still right) is refused too.
    payload = tmp_path / "data.tar"
    lying = dict(manifest, collections=[dict(c, count=c["count"] + 1) for c in manifest["collections"]])
    archive.write_backup(tmp_path / "lying.tar", lying, payload, {})
    with pytest.raises(ChromactlError, match="does not match its manifest"):
        archive.verify_backup(tmp_path / "lying.tar", work)
    (tmp_path / "junk.tar").write_bytes(b"not a tar at all" * 100)
    with pytest.raises(ChromactlError, match="not a chromactl backup"):
        archive.verify_backup(tmp_path / "junk.tar", work)


def test_names_leaving_the_data_folder_are_refused(tmp_path):
    output, _ = backup_file(tmp_path, extra=[("data/../../etc/evil", b"x")])
    work = tmp_path / "work"
    work.mkdir()
    with pytest.raises(ChromactlError, match="leaves the data folder"):
        archive.verify_backup(output, work)


def test_a_volume_without_chroma_sqlite3_is_refused(tmp_path):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("data/other")
        tar.addfile(info, io.BytesIO(b""))
    with pytest.raises(ChromactlError, match="no chroma.sqlite3"):
        archive.spool_payload([buffer.getvalue()], tmp_path / "p.tar", tmp_path / "c.sqlite3")


@pytest.mark.parametrize("data, target, verdict", [
    (CHROMA_06.fingerprint, CHROMA_06.fingerprint, "same"),
    (CHROMA_06.fingerprint, CHROMA_1X.fingerprint, "older"),
    (CHROMA_1X.fingerprint, CHROMA_06.fingerprint, "newer"),
    ({**CHROMA_06.fingerprint, "future": 1}, CHROMA_06.fingerprint, "newer"),
])
def test_compare(data, target, verdict):
    assert compare(data, target) == verdict


def test_expected_release_and_upgrade_paths():
    assert expected_release("chromadb/chroma:1.5.9") is CHROMA_1X
    assert expected_release("chromadb/chroma") is CHROMA_1X
    assert expected_release("chromadb/chroma:0.6.3") is CHROMA_06
    assert expected_release("chromadb/chroma:0.5.20") is None
    assert is_upgrade("chromadb/chroma:0.6.3", "chromadb/chroma:1.5.9") == (True, "")
    assert is_upgrade("chromadb/chroma:0.5.20", "chromadb/chroma:1.0.0")[0]
    assert is_upgrade("chromadb/chroma:1.0.0", "chromadb/chroma:1.5.9")[0]
    assert "downgrade" in is_upgrade("chromadb/chroma:1.5.9", "chromadb/chroma:1.0.0")[1]
    assert not is_upgrade("chromadb/chroma:0.6.3", "chromadb/chroma:0.6.3")[0]
    assert not is_upgrade("chromadb/chroma:0.6.3", "chromadb/chroma:latest")[0]
    assert not is_upgrade("chromadb/chroma:0.4.24", "chromadb/chroma:1.5.9")[0]
