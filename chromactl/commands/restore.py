"""`chromactl restore FILE`: the data of a backup, into a new volume, proven, then switched to.

Order: verify the file (sha256; regular files and folders only; a chroma.sqlite3 with a
known Chroma's exact schema and its manifest's fingerprint and counts) and that the
project's image reads that data; fill a NEW volume with a tar written anew from what was
verified; switch chromactl.yaml's data_volume (atomically) and let `up` recreate and prove
the server; compare the counts with the manifest. Any failure switches back and `up`
brings the previous volume back. The previous volume is never deleted: the operator
removes it."""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from chromactl import archive
from chromactl.datacheck import reader_headers, take_snapshot
from chromactl.deploy import Deployed, deploy, ensure_image, put_back
from chromactl.engine_api import Engine
from chromactl.errors import Cancelled, ChromactlError
from chromactl.fingerprint import compare, describe, expected_release
from chromactl.project import Project, load_project, load_settings, project_lock, write_settings
from chromactl.records import begin_operation, end_operation
from chromactl.recovery import recover
from chromactl.spec import container_name, volume_name
from chromactl.volumes import fill_volume, live_fingerprint, new_volume_name


@dataclass(frozen=True)
class RestoreResult:
    path: Path
    manifest: dict
    volume: str
    previous_volume: str
    records: int
    verified: tuple[str, ...]
    seconds: float
    url: str


def check_readable(manifest: dict, image: str, path: Path) -> None:
    """Refuse data the image would misread: newer than it, or older (that is `upgrade`'s job)."""
    data = manifest["fingerprint"]
    target = expected_release(image)
    if target is None:
        if manifest.get("image") != image:
            raise ChromactlError(f"cannot tell which data {image} reads, and {path} was taken from "
                                 f"{manifest.get('image')}", hint="restore it into a project with a version-tagged image")
        return
    verdict = compare(data, target.fingerprint)
    if verdict == "newer":
        raise ChromactlError(f"{path} holds {describe(data)}, newer than {image} reads ({target.label}): "
                             "an older server would silently lose data", hint=f"restore it into a project running "
                             f"{manifest.get('image')} (`chromactl init --force --image {manifest.get('image')}`)")
    if verdict == "older":
        raise ChromactlError(f"{path} holds {describe(data)}, older than {image} writes: opening it would migrate it",
                             hint=f"restore it into a project running {manifest.get('image')}, then "
                                  f"`chromactl upgrade --image {image}`")


def switch_volume(root: Path, volume: str | None) -> None:
    """Point chromactl.yaml at another data volume, atomically."""
    write_settings(root, replace(load_settings(root), data_volume=volume))


def restore(root: Path, path: Path, connect: Callable[[], Engine], reporter, *, confirm: Callable[[str], bool],
            timeout: float = 60) -> RestoreResult:
    started = time.monotonic()
    project = load_project(root)
    settings = project.settings
    path = path.absolute()
    with tempfile.TemporaryDirectory(prefix="chromactl-restore-") as work:
        reporter.step(f"verifying {path}")
        manifest = archive.verify_backup(path, Path(work))
        check_readable(manifest, settings.image, path)
        previous = volume_name(settings)
        question = (f"Replace the data of {settings.name} (volume {previous}, kept) with {manifest['records']} records "
                    f"from {path} taken {manifest['created']}?")
        if not confirm(question):
            raise Cancelled("cancelled: nothing was restored", hint="pass --yes to restore without asking")
        engine = connect()
        ensure_image(engine, settings.image, "missing", None, reporter)
        with project_lock(root):
            recover(root, engine, reporter, timeout=timeout)
            volume = new_volume_name(project)
            intent = {"op": "restore", "data_volume": settings.data_volume, "new_volume": volume, "switched": False}
            begin_operation(root, intent)
            fill_volume(engine, project, volume, settings.image,
                        lambda: archive.restore_payload(path, Path(work), manifest), reporter)
            reporter.step(f"switching {settings.name} to volume {volume}")
            begin_operation(root, {**intent, "switched": True})
            switch_volume(root, volume)
            try:
                deployed = deploy(load_project(root), engine, reporter, pull="never", timeout=timeout)
                verified = _verify(engine, deployed, manifest, Path(work))
            except BaseException as exc:
                reporter.step(f"switching back to volume {previous}")
                switch_volume(root, settings.data_volume)
                put_back(lambda: deploy(load_project(root), engine, reporter, pull="never", timeout=timeout),
                         exc, "restore failed", f"{settings.name} runs again on volume {previous}",
                         f"the restored copy is kept in volume {volume} for inspection (docker volume rm {volume})")
                end_operation(root)
                raise
            end_operation(root)
    return RestoreResult(path, manifest, volume, previous, manifest["records"], verified,
                         time.monotonic() - started, deployed.url)


def _verify(engine: Engine, deployed: Deployed, manifest: dict, work: Path) -> tuple[str, ...]:
    """The restored server holds what the manifest says: counts through the API with a
    reader's credential, and the fingerprint and counts of its chroma.sqlite3."""
    project = deployed.project
    expected = archive.counts_of(manifest["collections"])
    fingerprint, collections = live_fingerprint(engine, container_name(project.settings), deployed.spec.data_path, work)
    if fingerprint != manifest["fingerprint"] or archive.counts_of(collections) != expected:
        raise ChromactlError("the restored volume does not hold what the manifest says (fingerprint or counts)")
    proofs = [f"{len(expected)} collections: counts and fingerprint of chroma.sqlite3 equal the manifest"]
    headers = reader_headers(project)
    if headers is None:
        return (*proofs, "counts not asked through the API: chromactl holds no reader's secret (basic auth)")
    served = take_snapshot(deployed.target, headers, queries=[]).counts
    wanted = {k: v for k, v in expected.items() if k.startswith("default_tenant/default_database/")}
    if served != wanted:
        raise ChromactlError(f"the server counts {served}, the manifest {wanted}")
    return (*proofs, "the counts served by the API equal the manifest")
