"""One place that turns command results into text for people or JSON for programs.

stdout carries data; warnings and progress go to stderr. JSON is one document per run,
printed plainly (never through a console that could wrap or colour it), in the shape
chromactl/output.schema.json describes: every document carries `schema_version` and
`command`, the same concept has the same name and type in every command, and an error
under --json is a document too (`error`), with the exit code. Secrets are printed once,
on a line of their own, without markup.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import shlex
import shutil
import sys
import textwrap
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from rich.console import Console
from rich.table import Table

from chromactl.commands.doctor import Check, Diagnosis, Skip, Source, Verdict
from chromactl.commands.status import Pending
from chromactl.credentials import PROBE_USER
from chromactl.clients import (
    CREDENTIALS_VARIABLE,
    Connection,
    curl_check,
    fitting_clients,
    javascript_snippet,
    python_snippet,
)
from chromactl.deploy import Applied
from chromactl.envfile import describe_auth
from chromactl.errors import Cancelled, ChromactlError
from chromactl.images import chroma_version
from chromactl.tls import WARN_DAYS as TLS_WARN_DAYS

if TYPE_CHECKING:  # only for the annotations: importing them would pull in more than output needs
    from chromactl.audit import Traffic
    from chromactl.certs import TlsMaterial
    from chromactl.commands.audit import AuditResult
    from chromactl.commands.creds import Effect, ListResult, RemoveResult, SecretResult
    from chromactl.commands.doctor import DoctorResult, Finding
    from chromactl.commands.down import DownResult
    from chromactl.commands.status import InstanceStatus, PendingAction
    from chromactl.commands.tenant import TenantAddResult, TenantListResult
    from chromactl.commands.tls import TlsResult
    from chromactl.commands.up import UpResult
    from chromactl.scaffold import InitResult

SCHEMA_VERSION = 1


def stdout() -> Console:
    # Piped output is not cut to 80 columns: tables keep every value whole.
    console = Console(highlight=False, soft_wrap=True, emoji=False)
    if not console.is_terminal:
        console = Console(highlight=False, soft_wrap=True, width=240, emoji=False)
    return console


def stderr() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)


def emit(command: str, document: dict[str, Any]) -> None:
    """The one JSON document of a run, in the envelope every command shares."""
    sys.stdout.write(json.dumps({"schema_version": SCHEMA_VERSION, "command": command, **document}, indent=2) + "\n")
    sys.stdout.flush()


def printable(text: str) -> str:
    """Text safe to show on a terminal: control and format characters (ESC, CR, backspace,
    bidi overrides...) escaped, so that text read from a file (a backup's manifest) cannot
    move the cursor or redraw what the operator reads."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


def warn(message: str) -> None:
    stderr().print(f"[yellow]warning:[/yellow] {message}", markup=True)


def error(exc: ChromactlError, command: str | None = None, as_json: bool = False) -> None:
    if as_json:
        emit(command or "chromactl", {"error": {"message": exc.message, "hint": exc.hint,
                                                "exit_code": exc.exit_code}})
        return
    if exc.details:
        stderr().print(exc.details, markup=False)
    line = exc.message if isinstance(exc, Cancelled) else f"chromactl: error: {exc.message}"
    if exc.hint:
        line += f" ({exc.hint})"
    stderr().print(printable(line), markup=False)


def _show_secret(kind: str, user: str, secret: str) -> None:
    out = stdout()
    out.print(f"The {kind} of {user}, shown only this once -- store it now:", markup=False)
    sys.stdout.flush()
    sys.stdout.write(f"\n    {secret}\n\n")
    sys.stdout.flush()


# --- shared shapes: one name and one type per concept ---------------------------------


def tls_document(material: TlsMaterial | None, mode: str | None) -> dict | None:
    """The CA clients trust (ca, ca_fingerprint: what they pin) and the server's certificate."""
    if material is None:
        return None
    info = material.info
    return {"mode": mode, "ca": str(material.ca_path), "ca_fingerprint": material.ca_fingerprint,
            "certificate": {"names": list(info.names), "not_after": info.not_after.isoformat(),
                            "days_left": info.days_left, "fingerprint": info.fingerprint}}


def applied_document(effect: Effect | None) -> dict | None:
    if effect is None:
        return None
    return {"outcome": effect.applied.value, "in_effect": effect.in_effect,
            "revocation_pending": effect.revocation_pending, "error": effect.error.message if effect.error else None}


def _secret_document(user: str | None, role: str | None, secret: str | None) -> dict:
    return {"user": user, "role": role, "secret": secret}


# --- init and creds ----------------------------------------------------------------------


def init_result(result: InitResult, as_json: bool, *, next_step: bool = True) -> None:
    if as_json:
        emit("init", init_document(result))
        return
    s = result.settings
    out = stdout()
    verb = "Rewrote" if result.reinitialised else "Created"
    out.print(f"{verb} chromactl project {s.name!r} in {result.project}", markup=False)
    out.print(f"  auth: {describe_auth(s)}", markup=False)
    out.print(f"  image: {s.image}   address: {s.host}:{s.port}", markup=False)
    out.print(f"  clients: {fitting_clients(s.image)}", markup=False)
    if s.uses_tls:
        where = f"a CA of the project's own, {result.project}/.chromactl/tls/ca.pem" if s.tls == "auto" else s.tls_cert
        out.print(f"  tls: {s.tls} ({where})", markup=False)
    if result.kept_users:
        out.print(f"  kept users: {', '.join(result.kept_users)}", markup=False)
    for backup in result.backups:
        out.print(f"  old credentials saved in {backup}", markup=False)
    if not s.auth_enabled:
        warn("auth is none: anyone who can reach the port can read and change all data")
    if result.secret is not None:
        kind = "token" if s.auth == "token" else "password"
        _show_secret(kind, f"user {result.user!r} (role {result.role})", result.secret)
    if next_step:
        out.print("Next: chromactl up", markup=False)


def init_document(result: InitResult) -> dict:
    return {"project": str(result.project), "name": result.settings.name, "reinitialised": result.reinitialised,
            **_secret_document(result.user, result.role, result.secret),
            "kept_users": list(result.kept_users), "backups": list(result.backups)}


def _applied_sentence(effect: Effect | None, user: str) -> str:
    if effect is None:
        return ""
    still = (f"; what it replaced for {user!r} still works on the running server until `chromactl up` succeeds"
             if effect.revocation_pending else "")
    if effect.error is not None:
        return f"NOT in effect on the running server: {effect.error.message}{still}."
    return {
        Applied.RELOADED: "In effect now: the gateway reloaded its credentials (Chroma kept running).",
        Applied.RECREATED: "In effect now: Chroma was recreated to read them (a few seconds without service).",
        Applied.IN_EFFECT: "In effect now.",
        Applied.NOT_RUNNING: "No server is running; it starts with this change (`chromactl up`).",
        Applied.NO_ENGINE: f"NOT applied: no container engine answers{still or '; the next `chromactl up` applies it'}.",
        Applied.DEFERRED: f"Not applied (--no-apply){still or '; the next `chromactl up` applies it'}.",
        Applied.FAILED: "NOT in effect.",
        Applied.COMPOSE: f"NOT applied: Compose runs this project; export it again and restart it{still}.",
    }[effect.applied]


def scope_document(tenant: str | None, databases: tuple[str, ...]) -> dict | None:
    """A user's scope: its tenant and databases (null: server-wide; an empty list: all of the tenant's)."""
    return None if tenant is None else {"tenant": tenant, "databases": list(databases)}


def snippets_document(c: Connection | None) -> dict | None:
    """How a (scoped) user's client connects, as the text output prints it: Python and JavaScript."""
    if c is None:
        return None
    return {"python": python_snippet(c.settings, c.url, c.ca, c.tenant, c.databases),
            "javascript": javascript_snippet(c.settings, c.url, c.ca is not None, c.tenant, c.databases)}


def scope_words(tenant: str | None, databases: tuple[str, ...]) -> str:
    if tenant is None:
        return "server-wide"
    return f"tenant {tenant}, " + (f"database{'s' if len(databases) > 1 else ''} {', '.join(databases)}"
                                   if databases else "all its databases")


def secret_result(result: SecretResult, as_json: bool) -> None:
    for message in result.warnings:
        warn(message)
    command = "creds rotate" if result.rotated else "creds add"
    if as_json:
        emit(command, {**_secret_document(result.user, result.role, result.secret), "kind": result.kind,
                       "generated": result.generated, "warnings": list(result.warnings),
                       "applied": applied_document(result.effect),
                       "scope": scope_document(result.tenant, result.databases),
                       "snippets": snippets_document(result.connection)})
        return
    applied = _applied_sentence(result.effect, result.user)
    scope = f", {scope_words(result.tenant, result.databases)}" if result.tenant else ""
    if result.rotated:
        stdout().print(f"New {result.kind} for {result.user!r} (role {result.role}{scope}). {applied}", markup=False)
    else:
        stdout().print(f"Added user {result.user!r} (role {result.role}{scope}). {applied}", markup=False)
    if result.generated:
        _show_secret(f"generated {result.kind}", repr(result.user), result.secret)
    if result.connection is not None:
        stdout().print(connect_snippets(result.connection, f"{result.user}'s {result.kind}"), markup=False)


def list_result(result: ListResult, as_json: bool) -> None:
    if as_json:
        emit("creds list", {"auth": result.auth, "rbac": result.rbac,
                            "users": [{"user": u.user, "role": u.role, "tokens": u.tokens, "password": u.password,
                                       "internal": u.internal, "scope": scope_document(u.tenant, u.databases)}
                                      for u in result.users]})
        return
    table = Table(title=None, box=None, pad_edge=False)
    for column in ("USER", "ROLE", "SECRET", "SCOPE"):
        table.add_column(column)
    for u in result.users:
        secret = f"{u.tokens} token{'s' if u.tokens != 1 else ''}" if result.auth == "token" else "password"
        name = u.user + ("  (internal: auth probe)" if u.internal else "")
        table.add_row(name, u.role, secret, scope_words(u.tenant, u.databases))
    stdout().print(table)
    if not result.rbac:
        stderr().print("RBAC is off: every user has full access.", markup=False)


def remove_result(result: RemoveResult, as_json: bool) -> None:
    if as_json:
        emit("creds rm", {"user": result.user, "removed": True, "applied": applied_document(result.effect)})
        return
    stdout().print(f"Removed user {result.user!r}. {_applied_sentence(result.effect, result.user)}",
                   markup=False)


# --- tenant ------------------------------------------------------------------------------

_OUTCOME_WORDS = {"created": "created", "existed": "already there"}


def tenant_add_result(result: TenantAddResult, as_json: bool) -> None:
    if as_json:
        emit("tenant add", {"tenant": result.tenant, "outcome": result.outcome.value,
                            "databases": [{"database": d.name, "outcome": d.outcome.value} for d in result.databases],
                            "url": result.url, "user": result.user})
        return
    out = stdout()
    out.print(f"Tenant {result.tenant!r}: {_OUTCOME_WORDS[result.outcome.value]} (on {result.url}"
              + (f", as {result.user}" if result.user else "") + ")", markup=False)
    for d in result.databases:
        out.print(f"  database {d.name!r}: {_OUTCOME_WORDS[d.outcome.value]}", markup=False)


def tenant_list_result(result: TenantListResult, as_json: bool) -> None:
    if as_json:
        emit("tenant list", {"url": result.url, "user": result.user,
                             "tenants": [{"tenant": t.name, "exists": t.exists, "databases": list(t.databases),
                                          "users": list(t.users)} for t in result.tenants]})
        return
    table = Table(title=None, box=None, pad_edge=False)
    for column in ("TENANT", "DATABASES", "SCOPED USERS"):
        table.add_column(column)
    for t in result.tenants:
        databases = ", ".join(t.databases) if t.exists else "(not on the server: chromactl tenant add " + t.name + ")"
        table.add_row(t.name, databases or "-", ", ".join(t.users) or "-")
    stdout().print(table)


# --- up, status, down ---------------------------------------------------------------


class ProgressReporter:
    """Progress on stderr: steps, per-layer pull progress, build output."""

    def __init__(self, as_json: bool):
        self._as_json = as_json
        self._err = stderr()
        self._progress = None
        self._tasks: dict[str, int] = {}
        self._layer_status: dict[str, str] = {}

    def initialised(self, result: InitResult) -> None:
        if self._as_json:
            return  # the secret goes into the JSON document on stdout
        init_result(result, as_json=False, next_step=False)  # `up` is what is running

    def step(self, message: str) -> None:
        self._err.print(f"[dim]>[/dim] {message}", markup=True, highlight=False)

    # A layer's last word: it is all there, whatever progress was reported before.
    _LAYER_DONE = ("Already exists", "Download complete", "Pull complete")

    def pull_event(self, event: dict) -> None:
        layer = event.get("id")
        status = event.get("status", "")
        if not layer or layer.startswith(("latest", "sha256")) or ":" in layer:
            return
        if self._err.is_terminal:
            self._show_layer(layer, status, event.get("progressDetail") or {})
        elif self._layer_status.get(layer) != status and status in ("Pulling fs layer",) + self._LAYER_DONE:
            self._layer_status[layer] = status
            self._err.print(f"  layer {layer}: {status}", markup=False, highlight=False)

    def _show_layer(self, layer: str, status: str, detail: dict) -> None:
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn
        from rich.text import Text

        class KnownBytes(DownloadColumn):
            """Byte counts only where the engine gave some: never "0/? bytes"."""

            def render(self, task):
                return super().render(task) if task.fields.get("sized") else Text("")

        if self._progress is None:
            self._progress = Progress(TextColumn("{task.description}"), BarColumn(), KnownBytes(),
                                      console=self._err, transient=False)
            self._progress.start()
        if layer not in self._tasks:
            self._tasks[layer] = self._progress.add_task(f"{layer} {status}", total=None, sized=False)
        task_id = self._tasks[layer]
        if status in self._LAYER_DONE:  # no byte counts come with these: the layer is complete
            task = self._progress.tasks[task_id]
            total = task.total if task.fields.get("sized") and task.total else 1
            self._progress.update(task_id, description=f"{layer} {status}", total=total, completed=total)
        elif detail.get("total"):
            self._progress.update(task_id, description=f"{layer} {status}", total=detail["total"],
                                  completed=detail.get("current", 0), sized=True)
        else:
            self._progress.update(task_id, description=f"{layer} {status}")

    def pull_done(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def build_output(self, text: str) -> None:
        self._err.out(text, end="", highlight=False)


def connect_snippets(c: Connection, whose: str | None = None) -> str:
    """How a client connects: where the credential goes, then the Python and JavaScript snippets."""
    s = c.settings
    lines = []
    if s.auth_enabled:
        what = whose or ("a token" if s.auth == "token" else "USER:PASSWORD")
        if whose and s.auth == "basic":
            what = f"USER:PASSWORD ({whose})"
        lines.append(f"Set {CREDENTIALS_VARIABLE} to {what} in the client's environment, then:")
    lines.append("Python:")
    lines += ["    " + line for line in python_snippet(s, c.url, c.ca, c.tenant, c.databases).splitlines()]
    lines.append(f"JavaScript{f' (run node with NODE_EXTRA_CA_CERTS={c.ca})' if c.ca else ''}:")
    lines += ["    " + line for line in javascript_snippet(s, c.url, c.ca is not None, c.tenant, c.databases).splitlines()]
    return "\n".join(lines)


def _connect_snippets(result: UpResult) -> str:
    d = result.deployed
    return connect_snippets(Connection(result.project.settings, d.url, str(d.tls.ca_path) if d.tls is not None else None))


def up_result(result: UpResult, as_json: bool) -> None:
    s = result.project.settings
    if result.deployed is None:
        if as_json:
            emit("up", {"action": "dry-run", "commands": list(result.commands)})
        else:
            sys.stdout.write("\n".join(result.commands) + "\n")
        return
    d = result.deployed
    enforced = d.auth.enforced if d.auth else None
    version = chroma_version(s.image, d.api_version)
    if as_json:
        emit("up", {
            "name": s.name, "container": d.spec.name, "action": d.action.value, "url": d.url, "image": s.image,
            "chroma_version": version, "api_version": d.api_version, "volume": d.spec.volume,
            "heartbeat_ms": d.heartbeat_ms, "auth": {"mode": s.auth, "enforced": enforced},
            "gateway": {"container": d.gateway.name, "action": d.gateway_action.value} if d.gateway else None,
            "tls": tls_document(d.tls, s.tls),
            "init": init_document(result.init) if result.init is not None else None,
        })
        return
    out = stdout()
    api = f" (API {d.api_version})" if d.api_version and d.api_version != version else ""
    out.print(f"Chroma {version or '?'}{api} is up at {d.url} ({d.action.value}: container "
              f"{d.spec.name}, data in volume {d.spec.volume})", markup=False)
    if d.gateway is not None:
        out.print(f"Gateway {d.gateway.name} ({d.gateway_action.value}) enforces auth in front of it; "
                  "Chroma is on an internal network that only the gateway reaches.", markup=False)
    out.print(f"Clients: {fitting_clients(s.image)}.", markup=False)
    if d.tls is not None:
        out.print(f"TLS: the certificate names {', '.join(d.tls.info.names)}; clients trust {d.tls.ca_path}. "
                  f"Check from a client: {curl_check(str(d.tls.ca_path), d.tls.info.names, s.port)}", markup=False)
        _uncovered(d.tls)
    if d.auth:
        out.print(f"Auth verified: a request without credentials got HTTP {d.auth.anonymous_status}; "
                  f"chromactl's probe user got HTTP {d.auth.credential_status}. ({describe_auth(s)})", markup=False)
    else:
        warn("auth is none: anyone who can reach the port can read and change all data")
    out.print(_connect_snippets(result), markup=False)
    out.print("A client cannot connect? `chromactl doctor` tells why, from the client's side"
              + (f" (with its {CREDENTIALS_VARIABLE} set)." if s.auth_enabled else "."), markup=False)


def pending_text(pending: PendingAction) -> str:
    return {
        Pending.PULL: f"image needed: pull or build {pending.target}",
        Pending.CREATE: f"create needed: {pending.target}",
        Pending.RECREATE: f"recreate needed: {pending.target}",
        Pending.RELOAD: f"reload needed: {pending.target} (credentials or certificate changed)",
        Pending.REMOVE: f"removal needed: {pending.target}",
    }[pending.action]


def status_document(i: InstanceStatus) -> dict:
    return {
        "name": i.name, "container": i.container, "state": i.state, "healthy": i.healthy,
        "heartbeat_ms": i.heartbeat_ms, "chroma_version": i.chroma_version, "api_version": i.api_version,
        "image": i.image, "url": i.url, "volume": i.volume, "project": i.project,
        "auth": {"mode": i.auth_mode, "enforced": i.auth_enforced},
        "gateway": {"container": i.gateway.name, "state": i.gateway.state} if i.gateway else None,
        "drift": i.drift,
        "pending": [{"action": p.action.value, "target": p.target} for p in i.pending] if i.pending is not None else None,
        "problem": i.problem, "hint": i.hint, "costly_users": list(i.costly_users),
        "tls": tls_document(i.tls, i.tls_mode), "volume_bytes": i.volume_bytes, "last_backup": i.last_backup,
        "origin": i.origin, "traffic": traffic_document(i.traffic),
    }


def traffic_document(t: Traffic | None) -> dict | None:
    if t is None:
        return None
    return {"window_seconds": t.window_s, "requests_per_minute": t.requests_per_minute,
            "refused_per_minute": t.refused_per_minute}


def _per_minute(value: float) -> str:
    return f"{value:g}"


STATUS_FORMATS = ("pretty", "table", "json", "env")


def output_width(default: int = 100) -> int:
    """Columns to fit: COLUMNS when set (as rich and most CLIs honour it), else the terminal's,
    else `default` (piped output)."""
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return max(40, int(columns))
    if sys.stdout.isatty():
        return max(40, shutil.get_terminal_size((default, 24)).columns)
    return default


def status_result(instances: list[InstanceStatus], fmt: str = "pretty") -> None:
    """pretty: one block per instance that fits the terminal; table: every column (--wide);
    json: the documented document; env: KEY=VALUE lines a shell can eval (one instance)."""
    if fmt == "json":
        emit("status", {"instances": [status_document(i) for i in instances]})
        return
    if fmt == "env":
        sys.stdout.write("".join(status_env(i) for i in instances[:1]))
        sys.stdout.flush()
        return
    if not instances:
        stdout().print("No chromactl containers on this engine.", markup=False)
        return
    if fmt == "table":
        _status_table(instances)
        return
    sys.stdout.write(status_blocks(instances, output_width()))
    sys.stdout.flush()
    for i in instances:  # warnings go to stderr, as everywhere
        for warning in _status_warnings(i):
            warn(f"{i.name}: {warning}")


# The values a script or a person copies (a URL, a path, a container's name) are never cut
# nor wrapped: beside their key when they fit, else on a line of their own. Sentences wrap
# at spaces under their key.
_KEY_COLUMN = len("  last backup: ")


def _value_lines(key: str, value: str, width: int) -> list[str]:
    head = f"  {key + ':':<{_KEY_COLUMN - 2}}"
    if len(head) + len(value) <= width:
        return [head + value]
    return [f"  {key}:", "    " + value]


def _sentence_lines(key: str, text: str, width: int) -> list[str]:
    head = f"  {key + ':':<{_KEY_COLUMN - 2}}" if key else " " * _KEY_COLUMN
    return textwrap.wrap(text, width=width, initial_indent=head, subsequent_indent=" " * _KEY_COLUMN,
                         break_long_words=False, break_on_hyphens=False) or [head.rstrip()]


def _auth_words(i: InstanceStatus) -> str | None:
    if not i.auth_mode:
        return None
    if i.auth_mode == "none":
        words = "none: anyone who reaches the port can read and change all data"
    else:
        words = i.auth_mode + {True: ", enforced", False: ", NOT ENFORCED", None: " (not probed)"}[i.auth_enforced]
    return words + (", by the gateway" if i.gateway else "")


def _backup_lines(i: InstanceStatus, width: int) -> list[str]:
    backup = i.last_backup
    if backup is None:
        return _value_lines("last backup", "none yet (chromactl backup)", width)
    age = backup["age_seconds"]
    ago = f"{age / 86400:.1f} days" if age >= 86400 else f"{age / 3600:.1f} h" if age >= 3600 else f"{age / 60:.0f} min"
    return (_value_lines("last backup", f"{ago} ago" + ("" if backup.get("exists") else " (file gone)"), width)
            + _value_lines("backup file", backup["path"], width))


def status_blocks(instances: list[InstanceStatus], width: int = 100) -> str:
    """One block of `key: value` lines per instance, within `width` columns (a value that
    cannot fit even on its own line is still printed whole)."""
    blocks = []
    for i in instances:
        health = "healthy" if i.healthy else "NOT HEALTHY"
        compose = " (started by Compose)" if i.origin == "compose" else ""
        lines = [f"{i.name}: {i.state}, {health}{compose}"]
        if i.heartbeat_ms is not None:
            lines += _value_lines("heartbeat", f"{i.heartbeat_ms:.0f} ms", width)
        if i.chroma_version:
            api = f" (API {i.api_version})" if i.api_version and i.api_version != i.chroma_version else ""
            lines += _value_lines("version", i.chroma_version + api, width)
        lines += _value_lines("url", i.url or "-", width)
        auth = _auth_words(i)
        if auth:
            lines += _sentence_lines("auth", auth, width)
        if i.tls:
            lines += _value_lines("tls", f"{i.tls_mode or 'on'}, the certificate has {i.tls.info.days_left} days left",
                                  width)
            lines += _value_lines("ca", str(i.tls.ca_path), width)
        elif i.url and i.url.startswith("http://"):
            lines += _value_lines("tls", "off", width)
        lines += _value_lines("image", i.image or "-", width)
        lines += _value_lines("container", i.container, width)
        if i.gateway:
            lines += _value_lines("gateway", f"{i.gateway.name} ({i.gateway.state})", width)
        if i.traffic is not None:
            lines += _sentence_lines("traffic", f"{_per_minute(i.traffic.requests_per_minute)} requests/min, "
                                     f"{_per_minute(i.traffic.refused_per_minute)} refused/min (401, 403, 429) "
                                     "in the last minute", width)
        size = f" ({i.volume_bytes / 1024 / 1024:.1f} MB)" if i.volume_bytes is not None else ""
        lines += _value_lines("volume", (i.volume or "-") + size, width)
        lines += _backup_lines(i, width)
        if i.project:
            lines += _value_lines("project", i.project, width)
        if i.origin == "compose" and i.hint:
            lines += _sentence_lines("note", i.hint, width)
        elif i.pending is None:
            lines += _sentence_lines("pending", "cannot tell", width)
        elif not i.pending:
            lines += _sentence_lines("pending", "nothing: the containers match the files", width)
        else:
            for n, pending in enumerate(i.pending):
                lines += _sentence_lines("pending" if n == 0 else "", pending_text(pending), width)
        if i.problem:
            lines += _sentence_lines("problem", i.problem, width)
            if i.hint:
                lines += _sentence_lines("fix", i.hint, width)
        elif i.origin == "chromactl" and (i.pending or not i.healthy):
            lines += _sentence_lines("fix", _status_fix(i), width)
        blocks.append("\n".join(lines) + "\n")
    return "\n".join(blocks)


def _status_fix(i: InstanceStatus) -> str:
    """What to do about an instance that is not as its files say, when no probe said more."""
    if i.state == "missing":
        return "`chromactl up` creates and starts it"
    if i.state != "running":
        return "`chromactl up` starts it again (`chromactl logs` shows why it stopped)"
    return "`chromactl up`"


def _status_warnings(i: InstanceStatus) -> list[str]:
    warnings = []
    if i.tls and i.tls.info.days_left < TLS_WARN_DAYS:
        warnings.append(f"its certificate expires in {i.tls.info.days_left} days: `chromactl tls renew`")
    if i.costly_users:
        warnings.append(f"every request naming {', '.join(i.costly_users)} costs the server a slow bcrypt hash, "
                        "which strangers can time and make it spend; `chromactl creds rotate USER` re-hashes it")
    return warnings


# What `-o env` prints, in this order: for `eval "$(chromactl status -o env)"` in a script.
ENV_KEYS = ("CHROMA_NAME", "CHROMA_URL", "CHROMA_HOST", "CHROMA_PORT", "CHROMA_SSL", "CHROMA_CA", "CHROMA_AUTH",
            "CHROMA_STATE", "CHROMA_HEALTHY", "CHROMA_VERSION", "CHROMA_API_VERSION", "CHROMA_IMAGE",
            "CHROMA_CONTAINER", "CHROMA_GATEWAY", "CHROMA_VOLUME", "CHROMA_PROJECT")


def status_env(i: InstanceStatus) -> str:
    """Shell-safe KEY=VALUE lines (every value quoted as the shell reads it; empty when unknown)."""
    parts = urlsplit(i.url) if i.url else None
    values = {
        "CHROMA_NAME": i.name, "CHROMA_URL": i.url, "CHROMA_HOST": parts.hostname if parts else None,
        "CHROMA_PORT": parts.port if parts else None,
        "CHROMA_SSL": None if parts is None else str(parts.scheme == "https").lower(),
        "CHROMA_CA": str(i.tls.ca_path) if i.tls else None, "CHROMA_AUTH": i.auth_mode, "CHROMA_STATE": i.state,
        "CHROMA_HEALTHY": str(i.healthy).lower(), "CHROMA_VERSION": i.chroma_version,
        "CHROMA_API_VERSION": i.api_version, "CHROMA_IMAGE": i.image, "CHROMA_CONTAINER": i.container,
        "CHROMA_GATEWAY": i.gateway.name if i.gateway else None, "CHROMA_VOLUME": i.volume,
        "CHROMA_PROJECT": i.project,
    }
    return "".join(f"{key}={shlex.quote('' if values[key] is None else str(values[key]))}\n" for key in ENV_KEYS)


def _status_table(instances: list[InstanceStatus]) -> None:
    """Every column, nothing cut: as wide as its values make it."""
    table = Table(box=None, pad_edge=False)
    for column in ("NAME", "STATE", "HEALTHY", "HEARTBEAT", "VERSION", "URL", "AUTH", "PENDING", "IMAGE", "VOLUME"):
        table.add_column(column, no_wrap=True, overflow="ignore")
    for i in instances:
        auth = i.auth_mode or "?"
        if i.auth_mode and i.auth_mode != "none":
            auth += {True: " (enforced)", False: " (NOT ENFORCED)", None: ""}[i.auth_enforced]
        if i.gateway:
            auth += " via gateway"
        if i.tls:
            auth += f", TLS ({i.tls.info.days_left} days left)"
        pending = "?" if i.pending is None else "; ".join(pending_text(p) for p in i.pending) or "-"
        table.add_row(i.name, i.state, "yes" if i.healthy else "NO",
                      f"{i.heartbeat_ms:.0f} ms" if i.heartbeat_ms is not None else "-", i.chroma_version or "-",
                      i.url or "-", auth, pending, i.image or "-", i.volume or "-")
    wide = Console(file=io.StringIO(), highlight=False, soft_wrap=True, emoji=False, width=100_000)
    wide.print(table)
    sys.stdout.write("".join(line.rstrip() + "\n" for line in wide.file.getvalue().splitlines()))
    sys.stdout.flush()
    for i in instances:
        _data_line(i)
    for i in instances:
        for warning in _status_warnings(i):
            warn(f"{i.name}: {warning}")
        if i.problem:
            warn(f"{i.name}: {i.problem}" + (f" ({i.hint})" if i.hint else ""))
        elif i.origin == "compose":
            stderr().print(f"{i.name}: {i.hint}", markup=False)
        elif i.pending:
            stderr().print(f"{i.name}: changed since it started "
                           f"({'; '.join(pending_text(p) for p in i.pending)}): run `chromactl up`", markup=False)


# --- audit ------------------------------------------------------------------------------


def audit_document(result: AuditResult) -> dict:
    return {"entries": [dataclasses.asdict(e) for e in result.entries], "damaged_lines": result.damaged,
            "other_lines": result.skipped, "archived_files": result.archived_files, "live_gateway": result.live}


def _where(e) -> str:
    """tenant/database/collection, Chroma's default tenant and database said "default" and
    the collection's id cut to its first block (the JSON has them whole)."""
    defaults = {"default_tenant": "default", "default_database": "default"}
    parts = [defaults.get(p, p) for p in (e.tenant, e.database) if p]
    if e.collection:
        parts.append(e.collection.split("-", 1)[0] + ("…" if "-" in e.collection else ""))
    return "/".join(parts) or "-"


def audit_result(result: AuditResult, as_json: bool) -> None:
    """--json: one document; else a table within the terminal's width (100 columns when
    piped): UTC time, user, role, action, status code, reason, where, milliseconds. What a client
    sent (a path, a name) is shown with its control characters escaped."""
    if as_json:
        emit("audit", audit_document(result))
        return
    if result.damaged:
        warn(f"{result.damaged} damaged audit line{'s' if result.damaged != 1 else ''} skipped (cut or not of "
             "the expected shape)")
    if not result.entries:
        stderr().print("No requests match.", markup=False)
        return
    # One space between columns; the short ones keep their width (long names cut with an
    # ellipsis), WHERE takes what is left.
    table = Table(box=None, pad_edge=False, padding=(0, 1, 0, 0), width=output_width())
    table.add_column("TIME (UTC)", no_wrap=True, min_width=14)
    for column, widest in (("USER", 12), ("ROLE", 8), ("ACTION", 22)):
        table.add_column(column, no_wrap=True, overflow="ellipsis", min_width=len(column), max_width=widest)
    table.add_column("CODE", no_wrap=True, min_width=4)
    table.add_column("REASON", no_wrap=True, overflow="ellipsis", min_width=6, max_width=15)
    table.add_column("WHERE", no_wrap=True, overflow="ellipsis", min_width=5, ratio=1)
    table.add_column("MS", no_wrap=True, justify="right", min_width=2)
    for e in result.entries:
        when = datetime.fromtimestamp(e.ts, timezone.utc).strftime("%m-%d %H:%M:%S")
        table.add_row(when, printable(e.user) or "-", printable(e.role) or "-", printable(e.action),
                      str(e.status), e.reason or "-", printable(_where(e)), f"{e.seconds * 1000:.0f}")
    console = Console(file=io.StringIO(), highlight=False, soft_wrap=False, emoji=False, width=output_width())
    console.print(table)
    sys.stdout.write("".join(line.rstrip() + "\n" for line in console.file.getvalue().splitlines()))
    sys.stdout.flush()
    source = f"{result.archived_files} archived file{'s' if result.archived_files != 1 else ''}"
    source += f" and the live gateway {result.live}" if result.live else " (no gateway runs)"
    stderr().print(f"{len(result.entries)} request{'s' if len(result.entries) != 1 else ''}, from {source}.",
                   markup=False)


def renewed_sentence(applied: Applied | None) -> str:
    """How a renewed certificate reached the server: said for every outcome."""
    return {
        Applied.RELOADED: "In service now: the gateway reloaded it (Chroma kept running).",
        Applied.RECREATED: "In service now: Chroma was recreated to serve it (a few seconds without service).",
        Applied.IN_EFFECT: "In service now.",
        Applied.NOT_RUNNING: "No server is running; it serves this one when it starts (`chromactl up`).",
        Applied.NO_ENGINE: "NOT in service: no container engine answers; `chromactl up` puts it in service.",
        Applied.DEFERRED: "Not in service yet; `chromactl up` puts it in service.",
        Applied.FAILED: "NOT in service: putting it in service failed; `chromactl up` tries again.",
        Applied.COMPOSE: "NOT in service: Compose runs this project; export it again (`chromactl export compose`) "
                         "and restart it.",
    }.get(applied, "Not in service yet; `chromactl up` puts it in service.")


def tls_result(result: TlsResult, as_json: bool, *, renewed: bool = False) -> None:
    info = result.material.info
    if as_json:
        emit("tls renew" if renewed else "tls show",
             {**tls_document(result.material, result.mode),
              "applied": {"outcome": result.applied.value, "in_effect": result.applied.in_effect,
                          "revocation_pending": False, "error": None} if result.applied is not None else None})
        return
    out = stdout()
    if renewed:
        issued = "a new CA and server certificate" if getattr(result, "new_ca", False) else "a new server certificate"
        out.print(f"Issued {issued}. {renewed_sentence(result.applied)}", markup=False)
    out.print(f"CA (clients trust this): {result.material.ca_path}", markup=False)
    out.print(f"CA SHA-256 fingerprint:  {result.ca_fingerprint}", markup=False)
    out.print(f"Server certificate:      {', '.join(info.names)}; expires {info.not_after:%Y-%m-%d} "
              f"({info.days_left} days)", markup=False)
    out.print(f"Python: ssl=True, Settings(chroma_server_ssl_verify=\"{result.material.ca_path}\")   "
              f"Node: NODE_EXTRA_CA_CERTS={result.material.ca_path}", markup=False)
    out.print(f"Check from a client: {curl_check(str(result.material.ca_path), info.names, result.port)}", markup=False)
    if info.days_left < TLS_WARN_DAYS:
        warn(f"the certificate expires in {info.days_left} days: `chromactl tls renew`")
    if getattr(result, "new_ca", False):
        warn(f"a new CA: every client must trust the new {result.material.ca_path} (fingerprint above)")
    _uncovered(result.material)


def _uncovered(material) -> None:
    if material is not None and material.uncovered:
        warn(f"the certificate cannot name {', '.join(material.uncovered)}: the project's CA is constrained to the "
             "names it was made for (`chromactl tls renew --new-ca` makes one for today's names; clients must then "
             "trust it)")


def down_result(result: DownResult, as_json: bool) -> None:
    if as_json:
        emit("down", {"container": result.container, "removed": result.removed, "volume": result.volume,
                      "volume_removed": result.volume_removed, "volume_exists": result.volume_exists,
                      "gateway": {"container": result.gateway, "removed": True} if result.gateway else None,
                      "other_volumes": list(result.other_volumes)})
        return
    out = stdout()
    out.print(f"Removed container {result.container}." if result.removed else f"No container {result.container}.",
              markup=False)
    if result.gateway:
        out.print(f"Removed gateway {result.gateway}.", markup=False)
    if result.volume_removed:
        out.print(f"Deleted volume {result.volume} and its data.", markup=False)
    elif not result.volume_exists:
        out.print(f"No data volume {result.volume} (the server never ran).", markup=False)
    else:
        out.print(f"Data volume {result.volume} is kept.", markup=False)
    if result.other_volumes:
        out.print(f"Also kept, from restore or upgrade: {', '.join(result.other_volumes)} "
                  "(docker volume rm NAME when no longer needed).", markup=False)


def _data_line(i: InstanceStatus) -> None:
    """The data volume's size and the last backup's age, under the table."""
    size = f"{i.volume_bytes / 1024 / 1024:.1f} MB" if i.volume_bytes is not None else "size unknown"
    backup = i.last_backup
    if backup is None:
        told = "no backup yet (chromactl backup)"
    else:
        age = backup["age_seconds"]
        ago = f"{age / 86400:.1f} days" if age >= 86400 else f"{age / 3600:.1f} h" if age >= 3600 else f"{age / 60:.0f} min"
        told = f"last backup {ago} ago: {backup['path']}" + ("" if backup.get("exists") else " (file gone)")
    stdout().print(f"{i.name}: data {size} in {i.volume or '-'}; {told}", markup=False)


# --- doctor ----------------------------------------------------------------------------


def _who(r: DoctorResult) -> str:
    return {Source.ENVIRONMENT: f"the credential in {CREDENTIALS_VARIABLE}", Source.STDIN: "the credential read",
            Source.PROBE: f"chromactl's probe user ({PROBE_USER})", None: "the credential"}[r.source]


def _trust_fix(r: DoctorResult) -> str:
    ca = r.project_ca or "the CA that signed the server's certificate"
    return (f"trust the project's CA, {ca}: Python `ssl=True` with Settings(chroma_server_ssl_verify=\"{ca}\"), "
            f"node with NODE_EXTRA_CA_CERTS={ca}, curl --cacert {ca}")


def doctor_finding(r: DoctorResult, f: Finding) -> tuple[str, str | None]:
    """(what was found, the fix or None), in words."""
    address = f"{r.host}:{r.port}"
    if f.verdict is Verdict.SKIPPED:
        return {Skip.EARLIER: "not checked: an earlier check failed",
                Skip.NO_AUTH: "not checked: this project has auth none",
                Skip.NO_TLS: "not checked: plain http"}[f.skip], None
    d, user, role = f.diagnosis, r.user, r.role
    if f.check is Check.PORT:
        if d is None:
            return f"{address} accepts connections", None
        return (f"nothing accepts connections on {address}",
                f"start the server (`chromactl up`; `chromactl status` says what runs); the project publishes it on "
                f"{r.published} (chromactl.yaml `host`, `port`): from another machine use this machine's name or "
                "address, and check that no firewall stands between")
    if f.check is Check.TLS:
        names = ", ".join(r.certificate_names) or "?"
        if d is None:
            return f"the certificate names {r.host} and is signed by the CA trusted ({r.ca})", None
        if d is Diagnosis.TLS_CA_NOT_TRUSTED:
            trusted = r.ca or "the system's CAs"
            return (f"TLS: CA not trusted: the server's certificate is not signed by the CA the client trusts "
                    f"({trusted}): {f.detail}", _trust_fix(r))
        if d is Diagnosis.TLS_NAME_NOT_IN_CERTIFICATE:
            if r.tls_mode == "files":
                add = f"issue one that names {r.host} where the certificate comes from (tls files), then `chromactl up`"
            elif r.ca_permits_host:
                add = f"`chromactl init --force --tls-san {r.host}`, then `chromactl up`"
            else:
                add = (f"`chromactl init --force --tls-san {r.host}`, then `chromactl tls renew --new-ca` (the "
                       f"project's CA may sign only for {', '.join(r.ca_may_sign or ())}; clients must then trust the "
                       "new CA)")
            return (f"TLS: name not in the certificate: the client connects to {r.host}, the certificate names "
                    f"{names}", f"connect by one of those names, or add this one: {add}")
        if d is Diagnosis.TLS_CERTIFICATE_EXPIRED:
            return f"TLS: the server's certificate has expired ({f.detail})", "`chromactl tls renew`"
        if d is Diagnosis.TLS_EXPECTED:
            return ("TLS: the port speaks TLS, and the client asked in plain http",
                    f"use https://{r.host}:{r.port}, and " + _trust_fix(r))
        if d is Diagnosis.NO_TLS:
            return (f"TLS: the port does not speak TLS ({f.detail})",
                    f"use http://{r.host}:{r.port}" + (" (this project has tls off: `chromactl init --force --tls "
                                                       "auto`, then `chromactl up`, turns it on)"
                                                       if r.tls_mode == "off" else ""))
        return f"TLS: the handshake failed: {f.detail}", "see `chromactl status` and `chromactl logs --service gateway`"
    if f.check is Check.HEARTBEAT:
        if d is None:
            return "the heartbeat answers", None
        got = f"HTTP {f.status}" if f.status else "no answer"
        return (f"the heartbeat got {got}",
                "`chromactl status` says why; `chromactl up` starts what is down (and `chromactl logs`)")
    if f.check is Check.STRANGERS:
        if d is None:
            return f"a request without credentials is refused (HTTP {f.status})", None
        if d is Diagnosis.OPEN_TO_STRANGERS:
            who = "anyone on this machine" if r.published_on_loopback else f"anyone who reaches {address}"
            if r.auth == "none":
                return (f"server open to strangers: a request without credentials is answered (HTTP {f.status}): "
                        f"{who} can read and change all data (auth none)",
                        "turn auth on: `chromactl init --force --auth token`, then `chromactl up`")
            return (f"server open to strangers: a request without credentials is answered (HTTP {f.status}), though "
                    f"the project has {r.auth} auth", "is this the project's server? `chromactl status` probes it "
                    "and `chromactl up` puts the project's auth in front of it")
        if d is Diagnosis.NOT_ANSWERING:
            return f"a request without credentials got no answer ({f.detail})", "see `chromactl status`"
        return (f"a request without credentials got HTTP {f.status} (expected 401 or 403)",
                "see `chromactl status` and `chromactl logs`")
    if f.check is Check.CREDENTIAL:
        who = _who(r)
        if d is None and r.source is Source.PROBE:
            return "chromactl's probe user is accepted" + (f" (role {role})" if role else ""), None
        if d is None:
            return f"{who} is accepted: user {user!r}" + (f", role {role}" if role else ""), None
        if d is Diagnosis.NO_CREDENTIAL:
            if r.source is Source.PROBE:
                return ("no credential: the probe user's secret (.chromactl/probe-secret) is missing",
                        f"`chromactl creds rotate {PROBE_USER}`, or set {CREDENTIALS_VARIABLE}")
            what = "a token" if r.auth == "token" else "USER:PASSWORD"
            new = ("`chromactl creds add NAME` prints a new one" if r.auth == "token" else
                   "`chromactl creds add NAME` prints a password")
            return (f"no credential: {who} is empty, so the client sends none and is refused as a stranger",
                    f"set {CREDENTIALS_VARIABLE} to {what} ({new})")
        if d is Diagnosis.WRONG_SECRET:
            if f.malformed:
                form = "USER:PASSWORD" if r.auth == "basic" else "a token on one line"
                return (f"wrong secret: {who} is not {form}", f"set {CREDENTIALS_VARIABLE} to {form}")
            if r.auth == "basic" and f.known_user:
                why = f"it is not the password of user {user!r}"
            elif r.auth == "basic":
                why = f"the project has no user {user!r}"
            else:
                why = "it is none of the project's tokens"
            return (f"wrong secret: {who} is refused (HTTP {f.status}): {why}",
                    "give the client the secret it was issued (`chromactl creds list` names the users; "
                    "`chromactl creds rotate USER` issues a new one)")
        if d is Diagnosis.NOT_APPLIED:
            return (f"{who} is user {user!r}'s in the project's files, but the running server refuses it "
                    f"(HTTP {f.status})", "`chromactl up` gives the server the project's credentials")
        if d is Diagnosis.REVOCATION_PENDING:
            return (f"{who} is accepted by the server (HTTP {f.status}), but is in none of the project's files: a "
                    "removal or rotation has not reached the running server", "`chromactl up` applies it")
        return f"{who}: {f.detail or f'HTTP {f.status}'}", "see `chromactl status`"
    # Check.ACTION
    a = f.action
    if d is None:
        return f"{a}: allowed" + (f" (HTTP {f.status} to a request that changes nothing)" if f.status else
                                  " (by authz.yaml)"), None
    if d is Diagnosis.ROLE_LACKS_ACTION:
        said = "the gateway said so" if f.told_by_server else "per authz.yaml"
        having = ", ".join(r.roles_with_action.get(a, ())) or "none of the project's roles"
        if r.source is Source.PROBE:
            fix = (f"the probe user's role may only connect and list collections: check a client's own credential "
                   f"({CREDENTIALS_VARIABLE}=... chromactl doctor --action {a})")
        else:
            fix = (f"give {user!r} a role that has it ({having}): its `role` in authz.yaml, then `chromactl up`; or "
                   f"add {a} to role {role!r} under roles_mapping (README: Roles)")
        return f"role lacks this action: user {user!r} has role {role!r}, without {a} ({said})", fix
    if d is Diagnosis.NOT_ANSWERING:
        return f"{a}: no answer ({f.detail})", "see `chromactl status`"
    return (f"{a}: refused (HTTP {f.status}), though role {role!r} has it in authz.yaml",
            "`chromactl up` brings the server to the project's files; `chromactl status` says what differs")


_MARKS = {Verdict.OK: "ok", Verdict.WARNING: "WARNING", Verdict.FAILED: "FAILED", Verdict.SKIPPED: "skipped"}


def doctor_result(r: DoctorResult, as_json: bool) -> None:
    phrased = [(f, *doctor_finding(r, f)) for f in r.findings]
    if as_json:
        emit("doctor", {
            "url": r.url, "ca": r.ca, "project": str(r.project), "action": r.action, "healthy": r.healthy,
            "credential": None if r.source is None else {"source": r.source.value, "user": r.user, "role": r.role},
            "checks": [{"check": f.check.value, "outcome": f.verdict.value,
                        "diagnosis": f.diagnosis.value if f.diagnosis else None, "http_status": f.status,
                        "action": f.action, "message": message, "fix": fix} for f, message, fix in phrased]})
        return
    width = output_width()
    where = f"; CA {r.ca}" if r.ca else ""
    credential = f"; credential: {_who(r)}" if r.source is not None else ""
    lines = textwrap.wrap(f"Checked {r.url} as a client would{where}{credential}:", width=width,
                          break_long_words=False, break_on_hyphens=False)
    for f, message, fix in phrased:
        head = f"  {_MARKS[f.verdict]:<8}{f.check.value + ':':<11} "
        lines += textwrap.wrap(message, width=width, initial_indent=head, subsequent_indent=" " * len(head),
                               break_long_words=False, break_on_hyphens=False)
        if fix:
            lines += textwrap.wrap(f"fix: {fix}", width=width, initial_indent=" " * len(head),
                                   subsequent_indent=" " * (len(head) + 5), break_long_words=False,
                                   break_on_hyphens=False)
    failed = sum(f.verdict is Verdict.FAILED for f in r.findings)
    lines.append("All checks passed." if not failed else f"{failed} check{'s' if failed > 1 else ''} failed.")
    sys.stdout.write("\n".join(lines) + "\n")
    sys.stdout.flush()
