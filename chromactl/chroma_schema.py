"""What real Chroma writes into chroma.sqlite3: every row of its sqlite_master, per data
release. Pure data; chromactl.fingerprint ties each set to its release.

Measured on the real images chromactl-test/chroma:0.6.3 and chromactl-test/chroma:1.5.9
(chromadb 0.6.3 and 1.5.9 from PyPI): each ran on a throwaway volume, took collections with
metadata through chromadb's HttpClient (add, update, upsert, delete, a query with filters,
a collection created and deleted), was stopped, started and stopped again; then
`SELECT type, name, tbl_name, sql FROM sqlite_master` on the volume's chroma.sqlite3. A
volume that only saw the server start holds the same rows, and so does 0.6.3 data that
1.5.9 migrated, but for the migrations table's indentation (0.6.3's code created it). So
statements are compared as `normalized` makes them: comments out, whitespace squeezed.
Neither release runs ANALYZE: no sqlite_stat table appears. No trigger, no view.
"""

from __future__ import annotations

import re

Row = tuple[str, str, str, "str | None"]  # type, name, tbl_name, normalized sql (None: an automatic index)


def normalized(row: tuple) -> Row:
    """A row of sqlite_master as compared (str() for values a forged file may give another type)."""
    kind, name, table, sql = row
    sql = None if sql is None else " ".join(re.sub(r"--[^\n]*", " ", str(sql)).split())
    return str(kind), str(name), str(table), sql


_SHARED = {
    ("table", "collection_metadata", "collection_metadata",
     "CREATE TABLE collection_metadata ( collection_id TEXT REFERENCES collections(id) ON DELETE CASCADE, key TEXT"
     " NOT NULL, str_value TEXT, int_value INTEGER, float_value REAL, bool_value INTEGER, PRIMARY KEY "
     "(collection_id, key) )"),
    ("index", "sqlite_autoindex_collection_metadata_1", "collection_metadata", None),
    ("index", "sqlite_autoindex_collections_1", "collections", None),
    ("index", "sqlite_autoindex_collections_2", "collections", None),
    ("table", "databases", "databases",
     "CREATE TABLE databases ( id TEXT PRIMARY KEY, name TEXT NOT NULL, tenant_id TEXT NOT NULL REFERENCES "
     "tenants(id) ON DELETE CASCADE, UNIQUE (tenant_id, name) )"),
    ("index", "sqlite_autoindex_databases_1", "databases", None),
    ("index", "sqlite_autoindex_databases_2", "databases", None),
    ("table", "embedding_fulltext_search", "embedding_fulltext_search",
     "CREATE VIRTUAL TABLE embedding_fulltext_search USING fts5(string_value, tokenize='trigram')"),
    ("table", "embedding_fulltext_search_config", "embedding_fulltext_search_config",
     "CREATE TABLE 'embedding_fulltext_search_config'(k PRIMARY KEY, v) WITHOUT ROWID"),
    ("table", "embedding_fulltext_search_content", "embedding_fulltext_search_content",
     "CREATE TABLE 'embedding_fulltext_search_content'(id INTEGER PRIMARY KEY, c0)"),
    ("table", "embedding_fulltext_search_data", "embedding_fulltext_search_data",
     "CREATE TABLE 'embedding_fulltext_search_data'(id INTEGER PRIMARY KEY, block BLOB)"),
    ("table", "embedding_fulltext_search_docsize", "embedding_fulltext_search_docsize",
     "CREATE TABLE 'embedding_fulltext_search_docsize'(id INTEGER PRIMARY KEY, sz BLOB)"),
    ("table", "embedding_fulltext_search_idx", "embedding_fulltext_search_idx",
     "CREATE TABLE 'embedding_fulltext_search_idx'(segid, term, pgno, PRIMARY KEY(segid, term)) WITHOUT ROWID"),
    ("table", "embedding_metadata", "embedding_metadata",
     "CREATE TABLE embedding_metadata ( id INTEGER REFERENCES embeddings(id), key TEXT NOT NULL, string_value "
     "TEXT, int_value INTEGER, float_value REAL, bool_value INTEGER, PRIMARY KEY (id, key) )"),
    ("index", "embedding_metadata_float_value", "embedding_metadata",
     "CREATE INDEX embedding_metadata_float_value ON embedding_metadata (key, float_value) WHERE float_value IS "
     "NOT NULL"),
    ("index", "embedding_metadata_int_value", "embedding_metadata",
     "CREATE INDEX embedding_metadata_int_value ON embedding_metadata (key, int_value) WHERE int_value IS NOT NULL"),
    ("index", "embedding_metadata_string_value", "embedding_metadata",
     "CREATE INDEX embedding_metadata_string_value ON embedding_metadata (key, string_value) WHERE string_value IS"
     " NOT NULL"),
    ("index", "sqlite_autoindex_embedding_metadata_1", "embedding_metadata", None),
    ("table", "embeddings", "embeddings",
     "CREATE TABLE embeddings ( id INTEGER PRIMARY KEY, segment_id TEXT NOT NULL, embedding_id TEXT NOT NULL, "
     "seq_id BLOB NOT NULL, created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP, UNIQUE (segment_id, "
     "embedding_id) )"),
    ("index", "sqlite_autoindex_embeddings_1", "embeddings", None),
    ("table", "embeddings_queue", "embeddings_queue",
     "CREATE TABLE embeddings_queue ( seq_id INTEGER PRIMARY KEY, created_at TIMESTAMP NOT NULL DEFAULT "
     "CURRENT_TIMESTAMP, operation INTEGER NOT NULL, topic TEXT NOT NULL, id TEXT NOT NULL, vector BLOB, encoding "
     "TEXT, metadata TEXT )"),
    ("table", "embeddings_queue_config", "embeddings_queue_config",
     "CREATE TABLE embeddings_queue_config ( id INTEGER PRIMARY KEY, config_json_str TEXT )"),
    ("table", "maintenance_log", "maintenance_log",
     "CREATE TABLE maintenance_log ( id INT PRIMARY KEY, timestamp INT NOT NULL, operation TEXT NOT NULL )"),
    ("index", "sqlite_autoindex_maintenance_log_1", "maintenance_log", None),
    ("index", "sqlite_autoindex_max_seq_id_1", "max_seq_id", None),
    ("table", "migrations", "migrations",
     "CREATE TABLE migrations ( dir TEXT NOT NULL, version INTEGER NOT NULL, filename TEXT NOT NULL, sql TEXT NOT "
     "NULL, hash TEXT NOT NULL, PRIMARY KEY (dir, version) )"),
    ("index", "sqlite_autoindex_migrations_1", "migrations", None),
    ("table", "segment_metadata", "segment_metadata",
     "CREATE TABLE segment_metadata ( segment_id TEXT REFERENCES segments(id) ON DELETE CASCADE, key TEXT NOT "
     "NULL, str_value TEXT, int_value INTEGER, float_value REAL, bool_value INTEGER, PRIMARY KEY (segment_id, key)"
     " )"),
    ("index", "sqlite_autoindex_segment_metadata_1", "segment_metadata", None),
    ("table", "segments", "segments",
     'CREATE TABLE "segments" ( id TEXT PRIMARY KEY, type TEXT NOT NULL, scope TEXT NOT NULL, collection TEXT '
     'REFERENCES collection(id) NOT NULL )'),
    ("index", "sqlite_autoindex_segments_1", "segments", None),
    ("table", "tenants", "tenants", "CREATE TABLE tenants ( id TEXT PRIMARY KEY, UNIQUE (id) )"),
    ("index", "sqlite_autoindex_tenants_1", "tenants", None),
}
_ONLY_06 = {
    ("table", "collections", "collections",
     'CREATE TABLE "collections" ( id TEXT PRIMARY KEY, name TEXT NOT NULL, dimension INTEGER, database_id TEXT '
     'NOT NULL REFERENCES databases(id) ON DELETE CASCADE, config_json_str TEXT, UNIQUE (name, database_id) )'),
    ("table", "max_seq_id", "max_seq_id",
     "CREATE TABLE max_seq_id ( segment_id TEXT PRIMARY KEY, seq_id BLOB NOT NULL )"),
}
_ONLY_1X = {
    ("table", "acquire_write", "acquire_write",
     "CREATE TABLE acquire_write ( id INTEGER PRIMARY KEY, lock_status INTEGER NOT NULL )"),
    ("table", "collections", "collections",
     'CREATE TABLE "collections" ( id TEXT PRIMARY KEY, name TEXT NOT NULL, dimension INTEGER, database_id TEXT '
     'NOT NULL REFERENCES databases(id) ON DELETE CASCADE, config_json_str TEXT, schema_str TEXT, UNIQUE (name, '
     'database_id) )'),
    ("table", "embedding_metadata_array", "embedding_metadata_array",
     "CREATE TABLE embedding_metadata_array ( id INTEGER NOT NULL REFERENCES embeddings(id), key TEXT NOT NULL, "
     "string_value TEXT, int_value INTEGER, float_value REAL, bool_value INTEGER )"),
    ("index", "embedding_metadata_array_id_key", "embedding_metadata_array",
     "CREATE INDEX embedding_metadata_array_id_key ON embedding_metadata_array (id, key)"),
    ("index", "embedding_metadata_array_key_float", "embedding_metadata_array",
     "CREATE INDEX embedding_metadata_array_key_float ON embedding_metadata_array (key, float_value) WHERE "
     "float_value IS NOT NULL"),
    ("index", "embedding_metadata_array_key_int", "embedding_metadata_array",
     "CREATE INDEX embedding_metadata_array_key_int ON embedding_metadata_array (key, int_value) WHERE int_value "
     "IS NOT NULL"),
    ("index", "embedding_metadata_array_key_string", "embedding_metadata_array",
     "CREATE INDEX embedding_metadata_array_key_string ON embedding_metadata_array (key, string_value) WHERE "
     "string_value IS NOT NULL"),
    ("table", "max_seq_id", "max_seq_id", "CREATE TABLE max_seq_id ( segment_id TEXT PRIMARY KEY, seq_id INTEGER)"),
}

CHROMA_06_SCHEMA: frozenset[Row] = frozenset(_SHARED | _ONLY_06)
CHROMA_1X_SCHEMA: frozenset[Row] = frozenset(_SHARED | _ONLY_1X)


def first_difference(found: set[Row], known: frozenset[Row]) -> str:
    """The first way a schema differs from a known one, in words (triggers and views first)."""
    known_names = {(kind, name) for kind, name, _, _ in known}
    for kind, name, _, _ in sorted(found - known, key=lambda row: (row[0] not in ("trigger", "view"), str(row))):
        return f"{kind} {name!r} " + ("differs from Chroma's" if (kind, name) in known_names
                                       else "is not one Chroma creates")
    for kind, name, _, _ in sorted(known - found, key=str):
        return f"{kind} {name!r} is missing"
    return "none"
