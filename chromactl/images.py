"""What an image reference says about the Chroma inside it. Pure."""

from __future__ import annotations

import re
from dataclasses import dataclass

_VERSION_RE = re.compile(r"^v?(\d+)\.(\d+)(?:\.(\d+))?")

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


def data_path(image: str, working_dir: str | None = None) -> str:
    """Where the image keeps its data. From the tag's version; for other tags, from the
    image's working directory (/chroma in the 0.x images) when it is known."""
    version = tag_version(image)
    if version is not None:
        return DATA_PATH_1X if version >= (1, 0, 0) else DATA_PATH_0X
    _, tag, digest = split_reference(image)
    if tag in (None, "latest") and not digest:
        return DATA_PATH_1X
    if working_dir is not None:
        return DATA_PATH_0X if working_dir.rstrip("/") == "/chroma" else DATA_PATH_1X
    return DATA_PATH_0X


def chroma_version(image: str, api_version: str | None = None) -> str | None:
    """The version as the operator knows it: the image's tag (what they chose and can act
    on), else what the server's API says (1.x's /api/v2/version says 1.0.0 for every 1.x)."""
    version = tag_version(image)
    return ".".join(map(str, version)) if version else api_version
