"""`chromactl upgrade --image IMAGE`: Chroma 0.5/0.6 to 1.x (or a later 1.x), without
losing a record, and a way back that never runs an old server on migrated data.

1. The old server answers (`up`); a snapshot is taken: every count, and query results
   for a few records of each collection (with a reader's token; see datacheck).
2. It is stopped once: its volume is read out, written as the mandatory backup, and put
   into a NEW volume at the new image's data path. The old volume is never mounted by
   the new image.
3. The settings are rewritten as `init --force --image IMAGE` would (a 1.x image gets the
   gateway, with the same users, tokens and roles), pointing at the new volume; `up`
   starts and proves it.
4. Proof: counts and query results equal the snapshot, the data's fingerprint is the
   new release's, and the server logged no ERROR. On any failure the previous files are
   put back and `up` runs the old image on the old, untouched volume.

`--rollback` later goes back the same way (writes made since stay in the new volume)."""

from __future__ import annotations

import base64
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from chromactl import archive, fsio
from chromactl.backups import build_manifest, default_output
from chromactl.credentials import credential_file_names
from chromactl.datacheck import differences, reader_headers, take_snapshot
from chromactl.deploy import Deployed, deploy, ensure_image, put_back
from chromactl.engine_api import Engine
from chromactl.envfile import ENV_FILE, operator_variables, render_env_file
from chromactl.errors import Cancelled, ChromactlError, UsageError
from chromactl.fingerprint import describe, expected_release, is_upgrade
from chromactl.project import (
    PROBE_SECRET_FILE,
    PUBLIC_MODE,
    SECRET_MODE,
    Project,
    credential_file_contents,
    load_project,
    project_lock,
    put_back_files,
)
from chromactl.records import (
    UPGRADE_FILE,
    begin_operation,
    end_operation,
    forget_upgrade,
    last_upgrade,
    record_backup,
    record_upgrade,
)
from chromactl.recovery import recover
from chromactl.scaffold import init_project
from chromactl.settings import SETTINGS_FILE, Settings, parse_settings_file, render_settings_file, resolve_settings
from chromactl.spec import container_name, volume_name
from chromactl.volumes import fill_volume, live_fingerprint, new_volume_name, spool_volume, stopped, volume_fingerprint


@dataclass(frozen=True)
class UpgradeResult:
    from_image: str
    image: str
    volume: str
    previous_volume: str
    backup: Path
    gateway: str | None  # the gateway container now in front, if any
    records: int
    verified: tuple[str, ...]
    seconds: float
    url: str


def _saved_files(project: Project) -> dict[str, bytes | None]:
    """The files the switch rewrites, to put back byte for byte (None: absent)."""
    names = [SETTINGS_FILE, ENV_FILE, PROBE_SECRET_FILE, *credential_file_names(project.settings)]
    return {name: (project.root / name).read_bytes() if (project.root / name).is_file() else None for name in names}


def upgrade(root: Path, image: str, connect: Callable[[], Engine], reporter, *, confirm: Callable[[str], bool],
            timeout: float = 60) -> UpgradeResult:
    started = time.monotonic()
    project = load_project(root)
    old = project.settings
    allowed, why = is_upgrade(old.image, image)
    if not allowed:
        raise UsageError(f"cannot upgrade: {why}")
    target = expected_release(image)
    engine = connect()
    ensure_image(engine, image, "missing", None, reporter)
    if old.auth_enabled:
        ensure_image(engine, old.gateway_image, "missing", None, reporter)
    previous = volume_name(old)
    if not confirm(f"Upgrade {old.name} from {old.image} to {image}? Chroma migrates the data irreversibly; "
                   f"a backup is taken first and volume {previous} is kept untouched."):
        raise Cancelled("cancelled: nothing was upgraded", hint="pass --yes to upgrade without asking")

    with project_lock(root), tempfile.TemporaryDirectory(prefix="chromactl-upgrade-") as work_dir:
        work = Path(work_dir)
        recover(root, engine, reporter, timeout=timeout)
        reporter.step(f"proving {old.name} answers on {old.image} before anything changes")
        before_up = deploy(project, engine, reporter, pull="never", timeout=timeout)
        headers = reader_headers(project)
        before = take_snapshot(before_up.target, headers) if headers is not None else None
        backup_path = default_output(project)
        volume = new_volume_name(project)
        saved = _saved_files(project)
        begin_operation(root, {"op": "upgrade", "new_volume": volume, "work": work_dir,
                               "files": {k: base64.b64encode(v).decode() if v is not None else None
                                         for k, v in saved.items()}})
        with stopped(engine, project, reporter, timeout) as stop:
            spooled = spool_volume(engine, project, previous, work, reporter)
            manifest = build_manifest(project, spooled, include_credentials=False)
            archive.write_backup(backup_path, manifest, spooled.payload, {})
            record_backup(root, backup_path, manifest)
            reporter.step(f"backup written: {backup_path}")
            fill_volume(engine, project, volume, image, lambda: open(spooled.payload, "rb"), reporter)
            spooled.payload.unlink()
            stop.restart = False  # the old server is not started again: the new one replaces it
        try:
            reporter.step(f"switching {old.name} to {image} on volume {volume}")
            init_project(root, {"image": image, "data_volume": volume}, force=True)
            deployed = deploy(load_project(root), engine, reporter, pull="never", timeout=timeout)
            verified = _prove(engine, deployed, manifest, before, headers, target, work)
        except BaseException as exc:
            reporter.step(f"putting {old.name} back on {old.image} and volume {previous} (untouched)")
            put_back_files(root, saved)
            put_back(lambda: deploy(load_project(root), engine, reporter, pull="never", timeout=timeout), exc,
                     "upgrade failed, nothing was switched", f"{old.name} runs again on {old.image} and volume "
                     f"{previous}", f"backup {backup_path}; the attempt's volume {volume} is kept for inspection "
                                    f"(docker volume rm {volume})")
            end_operation(root)
            raise
        _record_upgrade(root, old.image, image, previous, volume, backup_path, saved)
        end_operation(root)
    return UpgradeResult(old.image, image, volume, previous, backup_path,
                         deployed.gateway.name if deployed.gateway else None, manifest["records"], verified,
                         time.monotonic() - started, deployed.url)


def _prove(engine: Engine, deployed: Deployed, manifest: dict, before, headers, target, work: Path) -> tuple[str, ...]:
    proofs = []
    project = deployed.project
    name = container_name(project.settings)
    fingerprint, collections = live_fingerprint(engine, name, deployed.spec.data_path, work)
    if target is not None and fingerprint != target.fingerprint:
        raise ChromactlError(f"after the upgrade the data is {describe(fingerprint)}, not {target.label} as expected")
    proofs.append(f"the data is now {describe(fingerprint)}")
    if archive.counts_of(collections) != archive.counts_of(manifest["collections"]):
        raise ChromactlError("the record counts in chroma.sqlite3 differ from those before the upgrade")
    proofs.append(f"{manifest['records']} records in {len(collections)} collections, as before")
    if before is not None:
        after = take_snapshot(deployed.target, headers, queries=[dict(q, ids=None) for q in before.queries])
        problems = differences(before, after)
        if problems:
            raise ChromactlError("the server answers differently after the upgrade: " + "; ".join(problems[:3]))
        proofs.append(f"counts served and {len(before.queries)} sample queries answer as before (through "
                      f"{'the gateway' if project.settings.uses_gateway else 'the server'})")
    else:
        proofs.append("queries not sampled: chromactl holds no reader's secret (basic auth keeps only hashes)")
    logs = b"".join(engine.logs(name)).decode(errors="replace")
    errors = [line for line in logs.splitlines() if "ERROR" in line]
    if errors:
        raise ChromactlError(f"the new server logged an error: {errors[0][:200]}")
    proofs.append("no ERROR in the server's log")
    return tuple(proofs)


def _record_upgrade(root: Path, from_image: str, image: str, previous: str, volume: str, backup: Path,
                    saved: dict[str, bytes | None]) -> None:
    note = {"created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "from_image": from_image,
            "image": image, "previous_volume": previous, "volume": volume, "backup": str(backup),
            "files": {k: base64.b64encode(v).decode() if v is not None else None for k, v in saved.items()}}
    record_upgrade(root, note)


@dataclass(frozen=True)
class RollbackResult:
    image: str
    volume: str
    abandoned_volume: str
    url: str
    kept_users: tuple[str, ...] = ()  # the users, secrets and roles in force when it ran: kept as they were


def _settings_before(root: Path, saved: dict[str, bytes | None]) -> Settings:
    """The settings the upgrade replaced, from the copy it kept."""
    text = saved.get(SETTINGS_FILE)
    if text is None:
        raise ChromactlError(f"{UPGRADE_FILE} holds no copy of {SETTINGS_FILE}", hint="restore a backup instead")
    return resolve_settings({}, parse_settings_file(text.decode()), folder_name=root.name)


def _files_for_rollback(project: Project, old: Settings) -> dict[Path, tuple]:
    """The old settings with the credentials in force NOW: a rollback never brings back a
    secret that was rotated or a user that was removed, nor drops one added since."""
    credentials = project.credentials
    if old.auth == "basic" and not old.uses_gateway:
        gateway_only = [u.name for u in credentials.users if u.password_hash and not u.password_hash.startswith("$2")]
        if gateway_only:
            raise ChromactlError(f"the passwords of {', '.join(gateway_only)} are hashed for the gateway ({{SSHA}}), "
                                 f"which {old.image} cannot check natively",
                                 hint="give them bcrypt hashes first: `chromactl creds rotate USER --password-stdin`")
    files = credential_file_contents(project.root, old, credentials, project.probe_secret)
    files[project.root / SETTINGS_FILE] = (render_settings_file(old), PUBLIC_MODE)
    files[project.root / ENV_FILE] = (render_env_file(old, operator_variables(project.env_text)), SECRET_MODE)
    return files


def rollback(root: Path, connect: Callable[[], Engine], reporter, *, confirm: Callable[[str], bool],
             timeout: float = 60) -> RollbackResult:
    """Back to the image and the volume from before the last upgrade. That volume was never
    opened by the new image (checked by its fingerprint); writes made since stay in the
    upgraded volume, which is kept."""
    note = last_upgrade(root)
    if note is None:
        raise ChromactlError("no upgrade to roll back", hint=f"{UPGRADE_FILE} is written by `chromactl upgrade`")
    project = load_project(root)
    if volume_name(project.settings) != note["volume"]:
        raise ChromactlError(f"the project no longer runs on volume {note['volume']} from the last upgrade",
                             hint="restore a backup instead: chromactl restore FILE")
    saved = {k: base64.b64decode(v) if v is not None else None for k, v in note["files"].items()}
    engine = connect()
    with tempfile.TemporaryDirectory(prefix="chromactl-rollback-") as work:
        spooled = volume_fingerprint(engine, project, note["previous_volume"], note["from_image"], Path(work))
    expected = expected_release(note["from_image"])
    if expected is not None and spooled != expected.fingerprint:
        raise ChromactlError(f"volume {note['previous_volume']} holds {describe(spooled)}, not what "
                             f"{note['from_image']} wrote: refusing to run an old server on migrated data")
    if not confirm(f"Go back to {note['from_image']} on volume {note['previous_volume']} as of {note['created']}? "
                   f"Writes made since stay in volume {note['volume']} (kept) and are not carried back."):
        raise Cancelled("cancelled: nothing was rolled back", hint="pass --yes to roll back without asking")
    with project_lock(root):
        project = load_project(root)  # again, under the lock: the credentials in force now
        files = _files_for_rollback(project, _settings_before(root, saved))
        fsio.write_files(files, root)
        deployed = deploy(load_project(root), engine, reporter, pull="never", timeout=timeout)
        forget_upgrade(root)
    return RollbackResult(note["from_image"], note["previous_volume"], note["volume"], deployed.url,
                          tuple(u.name for u in project.credentials.users if not u.internal))
