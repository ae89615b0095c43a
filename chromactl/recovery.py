"""Operations interrupted half-way: a backup, restore or upgrade that was killed (SIGKILL,
a power cut) or could not clean up after itself. Each writes what it is about to do first
(records.begin_operation); the next chromactl run that may act on the project finishes it
or puts it back, and says which. Always towards a state that was proven: the server on
the volume it ran on before, never a half-switched one."""

from __future__ import annotations

import base64
import shutil
from dataclasses import replace
from pathlib import Path

from chromactl.deploy import Reporter, deploy
from chromactl.engine_api import Engine
from chromactl.project import load_project, load_settings, put_back_files, write_settings
from chromactl.records import end_operation, operation

WORK_PREFIXES = (".chromactl-backup-", "chromactl-restore-", "chromactl-upgrade-")


def describe(note: dict) -> str:
    """What an interrupted operation left, for `status`."""
    what = {"backup": "a backup was interrupted with Chroma stopped for its copy",
            "restore": "a restore was interrupted before its copy was proven",
            "upgrade": "an upgrade was interrupted before the new server was proven"}
    return what.get(note.get("op"), f"an interrupted {note.get('op')}")


def recover(root: Path, engine: Engine, reporter: Reporter, *, bring_up: bool = True, timeout: float = 60) -> str | None:
    """Finish or put back the operation a killed run left (None: there was none). With
    `bring_up` false (`down`), only the files are put back; the server is not started."""
    note = operation(root)
    if note is None:
        return None
    op = note.get("op")
    work = note.get("work")
    if work and Path(work).name.startswith(WORK_PREFIXES):
        shutil.rmtree(work, ignore_errors=True)  # the copy half made: data, never a secret
    if op == "restore" and note.get("switched"):
        write_settings(root, replace(load_settings(root), data_volume=note.get("data_volume")))
    elif op == "upgrade" and note.get("files"):
        put_back_files(root, {name: base64.b64decode(v) if v is not None else None
                              for name, v in note["files"].items()})
    restart = bring_up and (op != "backup" or note.get("running", False))
    if restart:
        deploy(load_project(root), engine, reporter, pull="never", timeout=timeout)
    end_operation(root)
    kept = note.get("new_volume")
    done = {"backup": "Chroma runs again" if restart else "its leftovers are removed",
            "restore": "the server runs on its previous volume again",
            "upgrade": "the previous image, settings and volume are back"}.get(op, "undone")
    message = f"{describe(note)}: {done}" + (f"; the unproven copy is kept in volume {kept} "
                                               f"(docker volume rm {kept})" if kept else "")
    reporter.step(message)
    return message
