"""What an image reference says about the Chroma inside it. Pure."""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass

import yaml

from chromactl.engine_api import ImageInfo

_VERSION_RE = re.compile(r"^v?(\d+)\.(\d+)(?:\.(\d+))?")
IMAGE_REFERENCE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/:@-]{0,254}")  # what chromactl accepts as an image (fullmatch)

DATA_PATH_0X = "/chroma/chroma"  # Python server up to 0.6.x: WORKDIR /chroma, persist dir ./chroma
DATA_PATH_1X = "/data"  # Rust server from 1.0


def split_reference(image: str) -> tuple[str, str | None, str | None]:
    """(repository, tag, digest); the tag is None when the reference has none."""
    rest, _, digest = image.partition("@")
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > slash:
        return rest[:colon], rest[colon + 1:], digest or None
    return rest, None, digest or None


def pull_reference(image: str) -> tuple[str, str]:
    """(repository, tag-or-digest) for the engine's pull API; 'latest' when none is given."""
    repository, tag, digest = split_reference(image)
    if digest:
        return repository, digest
    return repository, tag or "latest"


def tag_version(image: str) -> tuple[int, int, int] | None:
    _, tag, _ = split_reference(image)
    match = _VERSION_RE.match(tag or "")
    if not match:
        return None
    return int(match[1]), int(match[2]), int(match[3] or 0)


@dataclass(frozen=True)
class ImageVerdict:
    enforces_auth: bool | None  # None: the tag does not tell
    reason: str


def auth_verdict(image: str) -> ImageVerdict:
    """Whether a Chroma image of this tag enforces chromactl's auth settings."""
    _, tag, digest = split_reference(image)
    if tag in (None, "latest") and not digest:
        return ImageVerdict(False, f"{image} is Chroma's latest release, a 1.x server, which ignores every auth setting")
    version = tag_version(image)
    if version is None:
        return ImageVerdict(None, f"the tag of {image} does not say which Chroma it holds")
    if version >= (1, 0, 0):
        return ImageVerdict(False, f"{image} is Chroma {'.'.join(map(str, version))}, a 1.x server, "
                                   "which ignores every auth setting")
    if version < (0, 5, 0):
        return ImageVerdict(False, f"{image} is Chroma {'.'.join(map(str, version))}, which reads other "
                                   "auth variables and classes than the 0.5/0.6 ones chromactl writes")
    return ImageVerdict(True, f"{image} enforces auth")


@dataclass(frozen=True)
class DataPath:
    """Where an image keeps its data, as far as its reference and metadata tell: a path,
    or a configuration file inside the image that names it (read through the engine),
    or neither (unknown: chromactl then refuses rather than guess)."""

    path: str | None
    config_file: str | None = None
    source: str = ""  # how it is known, for messages


OCI_VERSION_LABEL = "org.opencontainers.image.version"


def data_path(image: str, info: ImageInfo | None = None, explicit: str | None = None) -> DataPath:
    """Where the image keeps its data: the operator's data_path; else the version (tag or
    OCI label: /chroma/chroma up to 0.6, /data from 1.0); else the image's command (`--path
    X`, or `run CONFIG.yaml` whose persist_path says), its PERSIST_DIRECTORY, or, for the
    0.x Python server (its entrypoint or command runs chromadb's app), the default ./chroma
    under its working directory. Never a guess from the working directory alone."""
    if explicit:
        return DataPath(explicit, source="data_path in chromactl.yaml")
    version = tag_version(image)
    label = (info.labels.get(OCI_VERSION_LABEL) if info else None) or ""
    if version is None and _VERSION_RE.match(label):
        version = tag_version(f"x:{label}")
    _, tag, digest = split_reference(image)
    if version is None and tag in (None, "latest") and not digest:
        version = (1, 0, 0)  # Chroma's latest release is a 1.x server
    if version is not None:
        return DataPath(DATA_PATH_1X if version >= (1, 0, 0) else DATA_PATH_0X, source=f"Chroma {version[0]}.x")
    if info is None:
        return DataPath(None, source="the image is not inspected")
    words = [*(info.entrypoint or ()), *(info.command or ())]
    for index, word in enumerate(words):
        if word == "--path" and index + 1 < len(words):
            return DataPath(words[index + 1], source="--path in the image's command")
        if word.startswith("--path="):
            return DataPath(word.split("=", 1)[1], source="--path in the image's command")
    if "run" in words:
        following = words[words.index("run") + 1:]
        if following and following[0].endswith((".yaml", ".yml")):
            return DataPath(None, config_file=following[0], source=f"persist_path in {following[0]}")
    if info.environment.get("PERSIST_DIRECTORY"):
        return DataPath(_absolute(info.environment["PERSIST_DIRECTORY"], info.working_dir),
                        source="PERSIST_DIRECTORY in the image")
    if any("chromadb.app" in w or "docker_entrypoint" in w for w in words) and info.working_dir:
        return DataPath(_absolute("chroma", info.working_dir), source="the 0.x server's default under its working dir")
    return DataPath(None, source="its tag, labels and command do not say")


def persist_path_of(config_text: str, working_dir: str | None) -> str | None:
    """persist_path from a Chroma 1.x configuration file, absolute."""
    try:
        config = yaml.safe_load(config_text)
    except (yaml.YAMLError, RecursionError, ValueError):  # nested 20,000 deep; a 5,000-digit number
        return None
    value = config.get("persist_path") if isinstance(config, dict) else None
    return _absolute(value, working_dir) if isinstance(value, str) and value else None


def _absolute(path: str, working_dir: str | None) -> str:
    return path if path.startswith("/") else posixpath.normpath(posixpath.join(working_dir or "/", path))


def chroma_version(image: str, api_version: str | None = None) -> str | None:
    """The version as the operator knows it: the image's tag (what they chose and can act
    on), else what the server's API says (1.x's /api/v2/version says 1.0.0 for every 1.x)."""
    version = tag_version(image)
    return ".".join(map(str, version)) if version else api_version
