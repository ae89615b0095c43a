"""`chromactl init`: write a new project, or rewrite one's settings with --force."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping

from chromactl.scaffold import InitResult, init_project


def init(root: Path, given: Mapping[str, Any], *, force: bool = False,
         read_password: Callable[[], str] | None = None) -> InitResult:
    return init_project(root, given, force=force, read_password=read_password)
