"""Which Chroma wrote a data folder, told by the migrations in its chroma.sqlite3, and
whether an image may open it. Pure.

Version strings lie (1.5.9's /api/v2/version says 1.0.0) and an image's .sql files say
what it could apply, not what it expects, so the expected values are the ones measured
on data written by each release (`SELECT dir, MAX(version) FROM migrations GROUP BY dir`).
"""

from __future__ import annotations

from dataclasses import dataclass

from chromactl.chroma_schema import CHROMA_06_SCHEMA, CHROMA_1X_SCHEMA, Row
from chromactl.images import split_reference, tag_version

Fingerprint = dict[str, int]  # migration folder -> highest version applied


@dataclass(frozen=True)
class DataRelease:
    label: str  # how messages name the data
    fingerprint: Fingerprint
    schema: frozenset[Row]  # its sqlite_master, as measured (chromactl.chroma_schema)


CHROMA_06 = DataRelease("Chroma 0.6", {"embeddings_queue": 2, "metadb": 4, "sysdb": 9}, CHROMA_06_SCHEMA)
CHROMA_1X = DataRelease("Chroma 1.x", {"embeddings_queue": 2, "metadb": 6, "sysdb": 10}, CHROMA_1X_SCHEMA)
KNOWN = (CHROMA_06, CHROMA_1X)


def release_of(fingerprint: Fingerprint) -> DataRelease | None:
    return next((r for r in KNOWN if r.fingerprint == fingerprint), None)


def describe(fingerprint: Fingerprint) -> str:
    release = release_of(fingerprint)
    numbers = ", ".join(f"{k} {v}" for k, v in sorted(fingerprint.items()))
    return f"{release.label} data ({numbers})" if release else f"data of an unknown Chroma ({numbers})"


def expected_release(image: str) -> DataRelease | None:
    """The data an image writes, from its tag: 1.x for 1.0 and later (and `latest`), 0.6
    for 0.6.x; None when the tag does not tell (0.5.x was not measured)."""
    version = tag_version(image)
    if version is None:
        _, tag, digest = split_reference(image)
        return CHROMA_1X if tag in (None, "latest") and not digest else None
    if version >= (1, 0, 0):
        return CHROMA_1X
    if version[:2] == (0, 6):
        return CHROMA_06
    return None


def compare(data: Fingerprint, target: Fingerprint) -> str:
    """'same', 'older' (the target would migrate it) or 'newer' (the target cannot read it
    safely; a folder it does not know counts as newer)."""
    if data == target:
        return "same"
    if any(folder not in target or version > target[folder] for folder, version in data.items()):
        return "newer"
    return "older"


def is_upgrade(current_image: str, new_image: str) -> tuple[bool, str]:
    """Whether moving the data from one image to the other is an upgrade chromactl does:
    0.5/0.6 to 1.x, or one 1.x tag to a later one. (allowed, reason when not)."""
    old, new = tag_version(current_image), tag_version(new_image)
    if new is None:
        return False, f"the tag of {new_image} does not say which Chroma it holds: name a version tag (e.g. :1.5.9)"
    if new < (1, 0, 0):
        return False, f"{new_image} is not a 1.x image: chromactl upgrades to Chroma 1.x"
    if old is None:
        return False, f"the tag of {current_image} does not say which Chroma it holds"
    if old < (0, 5, 0):
        return False, f"{current_image} is older than 0.5: upgrade it to 0.6 by hand first"
    if new < old:
        return False, f"{new_image} is older than {current_image}: a downgrade silently loses data"
    if new == old:
        return False, f"the project already runs {current_image}"
    return True, ""
