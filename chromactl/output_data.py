"""Rendering for the data commands (backup, restore, upgrade): human text or one JSON
document on stdout, progress on stderr. Kept apart from output.py, which it builds on."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Callable

from chromactl.output import ProgressReporter, emit, stdout, warn

if TYPE_CHECKING:
    from chromactl.commands.backup import BackupResult
    from chromactl.commands.restore import RestoreResult
    from chromactl.commands.upgrade import UpgradeResult

MB = 1024 * 1024


class DataReporter(ProgressReporter):
    """`up`'s progress, and the bytes of long copies (a line at most every 2 s)."""

    def transfer(self, verb: str) -> Callable[[int], None]:
        self._started = last = time.monotonic()
        self._verb, self._done = verb, 0

        def on_bytes(done: int) -> None:
            nonlocal last
            self._done = done
            now = time.monotonic()
            if now - last >= 2:
                last = now
                self._err.print(f"  {verb} {done / MB:.0f} MB ({done / MB / (now - self._started):.0f} MB/s)",
                                markup=False)

        return on_bytes

    def transfer_done(self) -> None:
        seconds = max(time.monotonic() - self._started, 1e-6)
        self._err.print(f"  {self._verb} {self._done / MB:.1f} MB in {seconds:.1f} s", markup=False)


def _collections(manifest: dict) -> list[dict]:
    return [{"name": c["name"], "database": c["database"], "tenant": c["tenant"], "count": c["count"]}
            for c in manifest.get("collections", [])]


def backup_result(result: BackupResult, as_json: bool) -> None:
    m = result.manifest
    if as_json:
        emit("backup", {"path": str(result.path), "bytes": result.size, "seconds": round(result.seconds, 3),
                    "downtime_seconds": None if result.downtime is None else round(result.downtime, 3),
                    "credentials": result.credentials, "manifest": m})
        return
    out = stdout()
    out.print(f"Backup written: {result.path} ({result.size / MB:.1f} MB, mode 0600)", markup=False)
    out.print(f"  {m['records']} records in {len(m['collections'])} collections, {m['data']}, image {m['image']}",
              markup=False)
    out.print(f"  sha256 of the data: {m['payload']['sha256']}", markup=False)
    if result.downtime is not None:
        out.print(f"  server stopped for the copy: {result.downtime:.1f} s, then proven up again", markup=False)
    if result.credentials:
        warn(f"{result.path} holds the project's credentials (tokens or password hashes): keep it as secret as them")
    out.print(f"Restore with: chromactl restore {result.path}", markup=False)


def restore_result(result: RestoreResult, as_json: bool) -> None:
    if as_json:
        emit("restore", {"path": str(result.path), "volume": result.volume, "previous_volume": result.previous_volume,
                         "records": result.records, "verified": list(result.verified),
                         "seconds": round(result.seconds, 3), "url": result.url,
                         "collections": _collections(result.manifest)})
        return
    out = stdout()
    out.print(f"Restored {result.records} records from {result.path} into volume {result.volume}; "
              f"the server runs on it at {result.url}.", markup=False)
    for line in result.verified:
        out.print(f"  verified: {line}", markup=False)
    out.print(f"  the previous volume {result.previous_volume} is kept; when you no longer need it: "
              f"docker volume rm {result.previous_volume}", markup=False)


def upgrade_result(result: UpgradeResult, as_json: bool) -> None:
    if as_json:
        emit("upgrade", {
            "from_image": result.from_image, "image": result.image, "volume": result.volume,
            "previous_volume": result.previous_volume, "backup": str(result.backup),
            "gateway": {"container": result.gateway} if result.gateway else None,
            "records": result.records, "verified": list(result.verified), "seconds": round(result.seconds, 3),
            "url": result.url})
        return
    out = stdout()
    out.print(f"Upgraded {result.from_image} -> {result.image}: {result.records} records, now in volume "
              f"{result.volume}, served at {result.url}" + (" behind the gateway" if result.gateway else ""),
              markup=False)
    for line in result.verified:
        out.print(f"  verified: {line}", markup=False)
    out.print(f"  backup taken first: {result.backup}", markup=False)
    out.print(f"  the previous volume {result.previous_volume} is kept untouched. To go back (losing writes made "
              "since): chromactl upgrade --rollback. Once satisfied: docker volume rm " + result.previous_volume,
              markup=False)


def rollback_result(result, as_json: bool) -> None:
    if as_json:
        emit("upgrade --rollback", {"image": result.image, "volume": result.volume,
                                    "abandoned_volume": result.abandoned_volume, "url": result.url,
                                    "kept_users": list(result.kept_users)})
        return
    out = stdout()
    out.print(f"Back on {result.image} and volume {result.volume} at {result.url}.", markup=False)
    out.print(f"  kept the users, secrets and roles in force now: {', '.join(result.kept_users) or 'none'} "
              "(nothing revoked since the upgrade comes back)", markup=False)
    out.print(f"  the upgraded volume {result.abandoned_volume} is kept (writes made after the upgrade are there); "
              f"when you no longer need it: docker volume rm {result.abandoned_volume}", markup=False)
