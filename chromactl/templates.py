"""Access to the text templates of generated files.

In an installed wheel they sit in chromactl/templates; in a source checkout, in the
repository's top-level templates/ folder.
"""

from __future__ import annotations

from pathlib import Path
from string import Template

_PACKAGE_DIR = Path(__file__).resolve().parent


def _template_dir() -> Path:
    for candidate in (_PACKAGE_DIR / "templates", _PACKAGE_DIR.parent / "templates"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("chromactl's templates folder is missing from this installation")


def render_template(template_name: str, /, **values: str) -> str:
    text = (_template_dir() / template_name).read_text(encoding="utf-8")
    return Template(text).substitute(values)
