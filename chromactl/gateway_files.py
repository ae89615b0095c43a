"""The gateway's user, and its files written into a folder of the project (for an exported
Compose deployment, which bind-mounts them; `up` delivers them into a volume instead,
chromactl.configvol)."""

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


def write_gateway_files(plan: GatewayPlan, folder: Path, root: Path) -> None:
    """The plan's files in `folder`, the gateway user's alone (0700, files 0600), never
    through a link to somewhere else."""
    fsio.ensure_dir(folder, 0o700, root=root)
    fsio.own_dir(folder, plan.user)
    fsio.write_files({folder / name: (f.content.decode(), f.mode, f.uid, f.gid) for name, f in plan.files.items()},
                     root)
