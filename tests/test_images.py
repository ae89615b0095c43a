"""images: what an image reference says about the Chroma inside it."""

import pytest

from chromactl.engine_api import ImageInfo
from chromactl.images import auth_verdict, data_path, persist_path_of, pull_reference, split_reference, tag_version


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


@pytest.mark.parametrize("image, info, explicit, path", [
    ("chromadb/chroma:0.6.3", None, None, "/chroma/chroma"), ("chromadb/chroma:1.5.9", None, None, "/data"),
    ("chromadb/chroma", None, None, "/data"), ("chromadb/chroma:1.5.9", None, "/srv", "/srv"),
    # A tag that does not tell: the image's metadata, never its working directory alone.
    ("x/chroma:probe", ImageInfo("i", working_dir="/chroma"), None, None),
    ("x/chroma:probe", ImageInfo("i", working_dir="/data"), None, None),
    ("x/chroma@sha256:" + "a" * 64, None, None, None),
    ("x/chroma:probe", ImageInfo("i", labels={"org.opencontainers.image.version": "0.6.3"}), None, "/chroma/chroma"),
    ("x/chroma:probe", ImageInfo("i", command=("run", "--path", "/srv/c")), None, "/srv/c"),
    ("x/chroma:probe", ImageInfo("i", command=("run", "--path=/srv/c")), None, "/srv/c"),
    ("x/chroma:probe", ImageInfo("i", working_dir="/chroma", environment={"PERSIST_DIRECTORY": "db"}), None,
     "/chroma/db"),
    ("x/chroma:probe", ImageInfo("i", working_dir="/chroma", entrypoint=("/docker_entrypoint.sh",)), None,
     "/chroma/chroma"),
])
def test_data_path(image, info, explicit, path):
    assert data_path(image, info, explicit).path == path


def test_data_path_from_the_config_file_the_command_names():
    found = data_path("x/chroma:probe", ImageInfo("i", working_dir="/", command=("run", "/config.yaml")))
    assert found.path is None and found.config_file == "/config.yaml"
    assert persist_path_of("persist_path: /data\nport: 8000\n", "/") == "/data"
    assert persist_path_of("persist_path: ./chroma\n", "/work") == "/work/chroma"
    assert persist_path_of("port: 8000\n", "/") is None and persist_path_of("{{", "/") is None


def test_tag_version():
    assert tag_version("c:1.5") == (1, 5, 0) and tag_version("c:latest") is None
