"""`chromactl audit`: who did what through the gateway, from the archived logs of earlier
gateways (.chromactl/audit/) and the live gateway's log, filtered."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from chromactl.audit import AuditEntry, AuditFilter, check_status, parse_lines, parse_since, select, split_lines
from chromactl.audit_archive import archive_files, archived_lines
from chromactl.deploy import owned_container
from chromactl.engine_api import Engine
from chromactl.errors import ChromactlError
from chromactl.project import load_settings
from chromactl.spec import gateway_name


@dataclass(frozen=True)
class AuditResult:
    entries: tuple[AuditEntry, ...]  # those the filter kept, oldest first
    damaged: int  # audit lines that could not be read (cut, or not of the expected shape)
    skipped: int  # lines of the logs that are not audit lines
    archived_files: int  # files of .chromactl/audit/ read
    live: str | None  # the running gateway whose log was read, or None


def audit(root: Path, connect: Callable[[], Engine], *, since: str | None = None, user: str | None = None,
          action: str | None = None, status: str | None = None, now: float | None = None) -> AuditResult:
    """The audit trail of the project's gateways, archived and live, filtered. Natively
    there is none: Chroma itself records no requests."""
    now = time.time() if now is None else now
    wanted = AuditFilter(since=parse_since(since, now) if since is not None else None, user=user, action=action,
                         status=check_status(status) if status is not None else None)
    settings = load_settings(root)
    archived = archive_files(root)
    if not settings.uses_gateway and not archived:
        raise ChromactlError("no audit trail: this project runs Chroma natively, and Chroma records no requests; "
                             "only the gateway does", hint="put it in front: `chromactl init --force --gateway nginx`")
    engine = connect()
    gateway = owned_container(engine, root, gateway_name(settings))
    # The engine's own time of a line is never before the line's (nginx buffers it up to a
    # second): asking from `since` on misses nothing the filter keeps.
    live_lines = list(split_lines(engine.stdout_log(gateway.name, since=wanted.since))) if gateway is not None else []
    lines = list(archived_lines(root, {gateway.id} if gateway is not None else set())) + live_lines
    parsed = parse_lines(lines)
    return AuditResult(tuple(select(parsed.entries, wanted)), parsed.damaged, parsed.skipped, len(archived),
                       gateway.name if gateway is not None else None)
