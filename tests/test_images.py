"""images: what an image reference says about the Chroma inside it."""

import pytest

from chromactl.images import auth_verdict, data_path, pull_reference, split_reference, tag_version


@pytest.mark.parametrize("image, parts", [
    ("chromadb/chroma:0.6.3", ("chromadb/chroma", "0.6.3", None)),
    ("chromadb/chroma", ("chromadb/chroma", None, None)),
    ("127.0.0.1:5000/chroma:1.5.9", ("127.0.0.1:5000/chroma", "1.5.9", None)),
    ("127.0.0.1:5000/chroma", ("127.0.0.1:5000/chroma", None, None)),  # a registry port is no tag
    ("chroma@sha256:" + "a" * 64, ("chroma", None, "sha256:" + "a" * 64)),
])
def test_split_reference(image, parts):
    assert split_reference(image) == parts


def test_pull_reference_defaults_to_latest_and_prefers_a_digest():
    assert pull_reference("chromadb/chroma") == ("chromadb/chroma", "latest")
    assert pull_reference("c:1.0@sha256:" + "b" * 64) == ("c", "sha256:" + "b" * 64)


@pytest.mark.parametrize("image, enforces", [
    ("chromadb/chroma:0.6.3", True), ("chromadb/chroma:0.5.0", True), ("chromadb/chroma:v0.5.20", True),
    ("chromadb/chroma:0.4.24", False), ("chromadb/chroma:1.0.0", False), ("chromadb/chroma:1.5.9", False),
    ("chromadb/chroma:latest", False), ("chromadb/chroma", False), ("mirror/chroma:probe", None),
])
def test_auth_verdict(image, enforces):
    assert auth_verdict(image).enforces_auth is enforces


@pytest.mark.parametrize("image, working_dir, path", [
    ("chromadb/chroma:0.6.3", None, "/chroma/chroma"), ("chromadb/chroma:1.5.9", None, "/data"),
    ("chromadb/chroma", None, "/data"), ("x/chroma:probe", "/chroma", "/chroma/chroma"),
    ("x/chroma:probe", "/data", "/data"), ("x/chroma:probe", None, "/chroma/chroma"),
])
def test_data_path(image, working_dir, path):
    assert data_path(image, working_dir) == path


def test_tag_version():
    assert tag_version("c:1.5") == (1, 5, 0) and tag_version("c:latest") is None
