"""The audit trail the gateway writes, read back: one JSON line per request
(gateway.AUDIT_FORMAT), found among whatever else a log holds. Pure: lines in, typed
entries, filters and rates out; reading the engine and the archive is audit_archive's.

A line is an audit line when it starts with `{"audit":`; anything else (nginx's own
messages, should they reach stdout) is skipped. An audit line that is not whole JSON of the
expected shape (cut by a crash, a partial write) is damaged: counted, never fatal."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, fields
from datetime import datetime, timezone
from typing import Iterable, Iterator

from chromactl.errors import UsageError
from chromactl.probe import USER_AGENT_PREFIX

AUDIT_PREFIX = '{"audit":'
REFUSED_STATUSES = (401, 403, 429)  # what `status` counts as refused: credentials, role or scope, limits
RATE_WINDOW_S = 60  # `status` shows the rates of the last minute

# The project's archive of gateway logs (.chromactl/audit/): files of removed gateways,
# the oldest deleted once there are more than ARCHIVE_MAX_FILES or more than
# ARCHIVE_MAX_MB together (the newest is always kept).
ARCHIVE_MAX_FILES = 20
ARCHIVE_MAX_MB = 200


@dataclass(frozen=True)
class AuditEntry:
    """One request through the gateway, as it logged it. user: a user the gateway knows,
    "unknown" for a credential it does not know, "" for none."""

    time: str
    ts: float
    client: str
    user: str
    role: str
    action: str
    tenant: str
    database: str
    collection: str
    method: str
    path: str
    status: int
    reason: str
    seconds: float
    bytes_in: int
    bytes_out: int
    agent: str = ""  # the client's User-Agent ("" in lines written before it was recorded)

    @property
    def refused(self) -> bool:
        return self.status in REFUSED_STATUSES

    @property
    def by_chromactl(self) -> bool:
        """A request chromactl made itself (a probe of up, status, doctor...)."""
        return self.agent.startswith(USER_AGENT_PREFIX)


_TYPES = {f.name: f.type for f in fields(AuditEntry)}
_OPTIONAL = {"agent"}  # absent from lines an earlier chromactl's gateway wrote


class Damaged(ValueError):
    pass


def parse_line(line: str) -> AuditEntry | None:
    """The entry of an audit line; None for a line that is not one; Damaged for an audit
    line that is not whole or not of the expected shape."""
    line = line.strip()
    if not line.startswith(AUDIT_PREFIX):
        return None
    try:
        raw = json.loads(line)
    except ValueError:
        raise Damaged("not JSON") from None
    if not isinstance(raw, dict) or raw.get("audit") != 1:
        raise Damaged("not an audit record")
    values = {}
    for name, kind in _TYPES.items():
        value = raw.get(name)
        if name in _OPTIONAL and value is None:
            continue
        if kind == "str" and isinstance(value, str):
            values[name] = value
        elif kind == "int" and isinstance(value, int) and not isinstance(value, bool):
            values[name] = value
        elif kind == "float" and isinstance(value, (int, float)) and not isinstance(value, bool):
            values[name] = float(value)
        else:
            raise Damaged(f"field {name!r}")
    return AuditEntry(**values)


@dataclass(frozen=True)
class Parsed:
    entries: tuple[AuditEntry, ...]
    damaged: int  # audit lines that could not be read
    skipped: int  # lines that are not audit lines


def parse_lines(lines: Iterable[str]) -> Parsed:
    entries, damaged, skipped = [], 0, 0
    for line in lines:
        if not line.strip():
            continue
        try:
            entry = parse_line(line)
        except Damaged:
            damaged += 1
            continue
        if entry is None:
            skipped += 1
        else:
            entries.append(entry)
    return Parsed(tuple(entries), damaged, skipped)


def split_lines(chunks: Iterable[bytes]) -> Iterator[str]:
    """Lines from chunks that may cut a line (or a UTF-8 character) anywhere."""
    pending = b""
    for chunk in chunks:
        pending += chunk
        *whole, pending = pending.split(b"\n")
        for line in whole:
            yield line.decode("utf-8", errors="replace")
    if pending:
        yield pending.decode("utf-8", errors="replace")


_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_since(text: str, now: float) -> float:
    """--since as seconds since the epoch: a duration back from `now` (90s, 15m, 2h, 1h30m,
    7d, 1w) or a timestamp (2026-12-02T04:36:44Z, 2026-12-02 04:36, 2026-12-02; without a
    zone: UTC, as the audit lines' times)."""
    value = text.strip()
    if value and "".join(m.group(0) for m in _DURATION.finditer(value)) == value:
        return now - sum(float(n) * _UNIT_S[unit] for n, unit in _DURATION.findall(value))
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise UsageError(f"--since {text!r}: give a duration (30s, 15m, 2h, 7d) or a timestamp "
                         "(2026-12-02T04:36:44Z)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


_STATUS = re.compile(r"[1-5](?:\d\d|xx)")


def check_status(pattern: str) -> str:
    """--status: one code (403) or a class (4xx)."""
    value = pattern.strip().lower()
    if not _STATUS.fullmatch(value):
        raise UsageError(f"--status {pattern!r}: give an HTTP status (403) or a class (4xx)")
    return value


@dataclass(frozen=True)
class AuditFilter:
    since: float | None = None  # seconds since the epoch
    user: str | None = None
    action: str | None = None
    status: str | None = None  # "403" or "4xx" (check_status)

    def matches(self, entry: AuditEntry) -> bool:
        if self.since is not None and entry.ts < self.since:
            return False
        if self.user is not None and entry.user != self.user:
            return False
        if self.action is not None and entry.action != self.action:
            return False
        return self.status is None or status_matches(self.status, entry.status)


def status_matches(pattern: str, status: int) -> bool:
    """Whether `status` is `pattern` (403) or of its class (4xx)."""
    code = str(status)
    return code[0] == pattern[0] if pattern.endswith("xx") else code == pattern


def select(entries: Iterable[AuditEntry], wanted: AuditFilter) -> list[AuditEntry]:
    """The entries the filter keeps, oldest first: in the order the requests came in. A line's
    `ts` is when nginx wrote it, after the answer went out, and each worker writes its own
    lines: a long request's line may come after, and carry a later time than, the next one's
    (seen under load). Its start, `ts - seconds`, keeps the order of arrival."""
    return sorted((e for e in entries if wanted.matches(e)), key=lambda e: (e.ts - e.seconds, e.ts))


@dataclass(frozen=True)
class Traffic:
    """Requests through the gateway in the last `window_s` seconds, per minute."""

    requests_per_minute: float
    refused_per_minute: float
    window_s: int = RATE_WINDOW_S


def traffic(entries: Iterable[AuditEntry], now: float, window_s: int = RATE_WINDOW_S) -> Traffic:
    # No upper bound: a remote engine's clock may run ahead. chromactl's own requests (status's
    # probes among them) are left out: running status must not change what it shows.
    recent = [e for e in entries if e.ts >= now - window_s and not e.by_chromactl]
    per_minute = 60 / window_s
    return Traffic(round(len(recent) * per_minute, 1), round(sum(e.refused for e in recent) * per_minute, 1),
                   window_s)


def to_prune(files: list[tuple[str, int]], max_files: int = ARCHIVE_MAX_FILES,
             max_bytes: int = ARCHIVE_MAX_MB * 1024 * 1024) -> list[str]:
    """The archive files to delete, oldest first, given (name, size) of each (names sort by
    age): beyond `max_files`, or beyond `max_bytes` together. The newest is always kept."""
    ordered = sorted(files)
    doomed = []
    total = sum(size for _, size in ordered)
    while len(ordered) > 1 and (len(ordered) > max_files or total > max_bytes):
        name, size = ordered.pop(0)
        doomed.append(name)
        total -= size
    return doomed
