"""The gateway's configuration folder on disk: written for the gateway's own user, and
compared with what a plan renders. The folder is mounted whole into the gateway, so a
reload sees rewritten files."""

from __future__ import annotations

import os
from pathlib import Path

from chromactl import fsio
from chromactl.gateway import UNPRIVILEGED_ID
from chromactl.plan import GatewayPlan


def gateway_user() -> tuple[int, int]:
    """The unprivileged uid and gid the gateway runs as: the operator's own, or a fixed
    unprivileged one when chromactl runs as root. Its files are readable by it alone."""
    if os.getuid() != 0:
        return os.getuid(), os.getgid()
    return UNPRIVILEGED_ID, UNPRIVILEGED_ID


def files_changed(plan: GatewayPlan, root: Path) -> bool:
    """Whether the files on disk differ from the plan's (content, or owner)."""
    for path, (text, *_) in plan.files.items():
        if fsio.read_text(path, root) != text or (path.stat().st_uid, path.stat().st_gid) != plan.user:
            return True
    return False


def write_gateway_files(plan: GatewayPlan, root: Path) -> bool:
    """Write the files when they changed; True if they did. The folder mounted into the
    gateway is its user's alone, and never a link to somewhere else."""
    if not files_changed(plan, root):
        return False
    fsio.ensure_dir(plan.folder, 0o700, root=root)
    fsio.own_dir(plan.folder, plan.user)
    fsio.write_files(plan.files, root)
    return True
