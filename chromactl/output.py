"""One place that turns command results into text for people or JSON for programs.

stdout carries data; warnings and progress go to stderr. JSON is printed plainly,
never through a console that could wrap or colour it. Secrets are printed once, on
a line of their own, without markup.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from chromactl.commands.creds import ListResult, RemoveResult, SecretResult
from chromactl.commands.init import InitResult
from chromactl.credentials import CHEAP_ROUNDS
from chromactl.tls import WARN_DAYS as TLS_WARN_DAYS
from chromactl.envfile import BASIC_CLIENT, TOKEN_CLIENT, describe_auth
from chromactl.errors import ChromactlError
from chromactl.images import tag_version

if TYPE_CHECKING:  # only for the annotations: importing them would pull in more than output needs
    from chromactl.commands.down import DownResult
    from chromactl.commands.status import InstanceStatus
    from chromactl.commands.tls import TlsResult
    from chromactl.commands.up import UpResult


def stdout() -> Console:
    # Piped output is not cut to 80 columns: tables keep every value whole.
    console = Console(highlight=False, soft_wrap=True, emoji=False)
    if not console.is_terminal:
        console = Console(highlight=False, soft_wrap=True, width=240, emoji=False)
    return console


def stderr() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)


def print_json(document: Any) -> None:
    sys.stdout.write(json.dumps(document, indent=2) + "\n")
    sys.stdout.flush()


def warn(message: str) -> None:
    stderr().print(f"[yellow]warning:[/yellow] {message}", markup=True)


def error(exc: ChromactlError) -> None:
    if exc.details:
        stderr().print(exc.details, markup=False)
    line = f"chromactl: error: {exc.message}"
    if exc.hint:
        line += f" ({exc.hint})"
    stderr().print(line, markup=False)


def _show_secret(kind: str, user: str, secret: str) -> None:
    out = stdout()
    out.print(f"The {kind} of {user}, shown only this once -- store it now:", markup=False)
    sys.stdout.flush()
    sys.stdout.write(f"\n    {secret}\n\n")
    sys.stdout.flush()


def init_result(result: InitResult, as_json: bool, *, next_step: bool = True) -> None:
    if as_json:
        document: dict[str, Any] = {"project": str(result.project), "user": result.user,
                                    "role": result.role, "secret": result.secret}
        if result.reinitialised:
            document["kept_users"] = list(result.kept_users)
            document["backups"] = list(result.backups)
        print_json(document)
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


def fitting_clients(image: str) -> str:
    """Which Chroma clients can talk to this server: 1.x clients cannot use a 0.x server."""
    from chromactl.images import tag_version

    version = tag_version(image)
    if version is not None and version < (1, 0, 0):
        return ("Chroma 0.x clients only (Python: pip install 'chromadb<0.7'; JavaScript: chromadb@1.x); "
                "today's Python 1.x client cannot use this server")
    return "current clients (Python: pip install chromadb, 1.x; JavaScript: npm install chromadb)"


def secret_result(result: SecretResult, as_json: bool, *, rotated: bool = False) -> None:
    for message in result.warnings:
        warn(message)
    if as_json:
        print_json({"user": result.user, "role": result.role, "secret": result.secret, "applied": result.applied})
        return
    applied = result.applied or "Apply with chromactl up."
    if rotated:
        stdout().print(f"New {result.kind} for {result.user!r} (role {result.role}); the old one stops working. "
                       f"{applied}", markup=False)
    else:
        stdout().print(f"Added user {result.user!r} (role {result.role}). {applied}",
                       markup=False)
    if result.generated:
        _show_secret(f"generated {result.kind}", repr(result.user), result.secret)


def list_result(result: ListResult, as_json: bool) -> None:
    if as_json:
        print_json([{"user": u.user, "role": u.role, "tokens": u.tokens, "password": u.password,
                     "internal": u.internal} for u in result.users])
        return
    table = Table(title=None, box=None, pad_edge=False)
    for column in ("USER", "ROLE", "SECRET"):
        table.add_column(column)
    for u in result.users:
        secret = f"{u.tokens} token{'s' if u.tokens != 1 else ''}" if result.auth == "token" else "password"
        name = u.user + ("  (internal: auth probe)" if u.internal else "")
        table.add_row(name, u.role, secret)
    stdout().print(table)
    if not result.rbac:
        stderr().print("RBAC is off: every user has full access.", markup=False)


def remove_result(result: RemoveResult, as_json: bool) -> None:
    if as_json:
        print_json({"user": result.user, "removed": True, "applied": result.applied})
        return
    applied = result.applied or "Apply with chromactl up."
    stdout().print(f"Removed user {result.user!r}. {applied}", markup=False)


# --- up, status, down ---------------------------------------------------------------


class ProgressReporter:
    """Progress of `up` on stderr: steps, per-layer pull progress, build output."""

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


def _tls_document(tls, mode: str) -> dict | None:
    if tls is None:
        return None
    return {"mode": mode, "ca": str(tls.ca_path), "fingerprint": tls.info.fingerprint,
            "days_left": tls.info.days_left, "names": list(tls.info.names)}


def _connect_snippets(result: UpResult) -> str:
    s = result.project.settings
    host, port = result.url.rsplit("//", 1)[1].rsplit(":", 1)
    host = host.strip("[]")
    ssl, js_env, verify = "", "", ""
    if result.tls is not None:
        # Clients must trust the project's CA; Node's built-in fetch takes it from the environment only.
        ssl = ", ssl=True"
        js_env = f" (run node with NODE_EXTRA_CA_CERTS={result.tls.ca_path})"
        verify = f"chroma_server_ssl_verify=\"{result.tls.ca_path}\""
    if not s.auth_enabled:
        settings = f", settings=Settings({verify})" if verify else ""
        return (f"Python:      chromadb.HttpClient(host={host!r}, port={port}{ssl}{settings})\n"
                f"JavaScript{js_env}:  new ChromaClient({{ path: \"{result.url}\" }})")
    var = "CHROMA_CLIENT_AUTH_CREDENTIALS"
    what = "a token" if s.auth == "token" else "USER:PASSWORD"
    py_provider, js_provider = (TOKEN_CLIENT, "token") if s.auth == "token" else (BASIC_CLIENT, "basic")
    py_extra = js_extra = ""
    if s.auth == "token" and s.token_header == "X-Chroma-Token":
        py_extra = ',\n        chroma_auth_token_transport_header="X-Chroma-Token"'
        js_extra = ', tokenHeaderType: "X_CHROMA_TOKEN"'
    return (
        f"Set {var} to {what} in the client's environment, then:\n"
        "Python:\n"
        "    import os, chromadb\n"
        "    from chromadb.config import Settings\n"
        f"    client = chromadb.HttpClient(host={host!r}, port={port}{ssl}, settings=Settings(\n"
        + (f"        {verify},\n" if verify else "")
        + f"        chroma_client_auth_provider=\"{py_provider}\",\n"
        f"        chroma_client_auth_credentials=os.environ[\"{var}\"]{py_extra}))\n"
        f"JavaScript{js_env}:\n" + _js_snippet(result, var, js_provider, js_extra)
    )


def _js_snippet(result: UpResult, var: str, provider: str, token_header_extra: str) -> str:
    """The 3.x client (for Chroma 1.x) takes headers; the 1.x client (for 0.x) took `auth`."""
    s = result.project.settings
    version = tag_version(s.image)
    if version is not None and version < (1, 0, 0):
        return (f"    const client = new ChromaClient({{ path: \"{result.url}\",\n"
                f"      auth: {{ provider: \"{provider}\", credentials: process.env.{var}{token_header_extra} }} }});")
    host, port = result.url.rsplit("//", 1)[1].rsplit(":", 1)
    if s.auth == "basic":
        header = f'Authorization: "Basic " + Buffer.from(process.env.{var}).toString("base64")'
    elif s.token_header == "X-Chroma-Token":
        header = f'"X-Chroma-Token": process.env.{var}'
    else:
        header = f"Authorization: `Bearer ${{process.env.{var}}}`"
    ssl = ", ssl: true" if result.tls is not None else ""
    return (f"    const client = new ChromaClient({{ host: \"{host.strip('[]')}\", port: {port}{ssl},\n"
            f"      headers: {{ {header} }} }});")


def up_result(result: UpResult, as_json: bool) -> None:
    s = result.project.settings
    if result.action == "dry-run":
        if as_json:
            print_json({"action": "dry-run", "command": result.command})
        else:
            sys.stdout.write(result.command + "\n")
        return
    enforced = result.auth.enforced if result.auth else False
    if as_json:
        document: dict[str, Any] = {
            "name": s.name, "container": result.spec.name, "action": result.action, "url": result.url,
            "image": s.image, "version": result.version, "volume": result.spec.volume,
            "heartbeat_ms": result.heartbeat_ms, "auth": {"mode": s.auth, "enforced": enforced},
        }
        if result.gateway is not None:
            document["gateway"] = {"container": result.gateway.name, "action": result.gateway_action}
        document["tls"] = _tls_document(result.tls, s.tls)
        if result.init is not None:
            document["init"] = {"project": str(result.init.project), "user": result.init.user,
                                "role": result.init.role, "secret": result.init.secret}
        print_json(document)
        return
    out = stdout()
    out.print(f"Chroma {result.version or '?'} is up at {result.url} ({result.action}: container "
              f"{result.spec.name}, data in volume {result.spec.volume})", markup=False)
    if result.gateway is not None:
        out.print(f"Gateway {result.gateway.name} ({result.gateway_action}) enforces auth in front of it; "
                  "Chroma shares its network namespace and listens on its loopback only.", markup=False)
    out.print(f"Clients: {fitting_clients(s.image)}.", markup=False)
    if result.auth:
        out.print(f"Auth verified: a request without credentials got HTTP {result.auth.anonymous_status}; "
                  f"chromactl's probe user got HTTP {result.auth.credential_status}. ({describe_auth(s)})", markup=False)
    else:
        warn("auth is none: anyone who can reach the port can read and change all data")
    out.print(_connect_snippets(result), markup=False)


STATUS_KEYS = ("name", "container", "state", "healthy", "heartbeat_ms", "version", "image", "url", "volume")


def status_result(instances: list[InstanceStatus], as_json: bool) -> None:
    if as_json:
        print_json([{**{key: getattr(i, key) for key in STATUS_KEYS},
                     "auth": {"mode": i.auth_mode, "enforced": i.auth_enforced}, "drift": i.drift,
                     "pending": list(i.pending) if i.pending is not None else None,
                     "problem": i.problem, "hint": i.hint, "costly_users": list(i.costly_users), "tls": i.tls,
                     "volume_bytes": i.volume_bytes, "last_backup": i.last_backup,
                     **({"gateway": i.gateway} if i.gateway else {})}
                    for i in instances])
        return
    if not instances:
        stdout().print("No chromactl containers on this engine.", markup=False)
        return
    table = Table(box=None, pad_edge=False)
    for column in ("NAME", "STATE", "HEALTHY", "HEARTBEAT", "VERSION", "URL", "AUTH", "PENDING", "IMAGE", "VOLUME"):
        table.add_column(column)
    for i in instances:
        auth = i.auth_mode or "?"
        if i.auth_mode and i.auth_mode != "none":
            auth += {True: " (enforced)", False: " (NOT ENFORCED)", None: ""}[i.auth_enforced]
        if i.gateway:
            auth += " via gateway"
        if i.tls:
            auth += f", TLS ({i.tls['days_left']} days left)"
        table.add_row(i.name, i.state, "yes" if i.healthy else "NO",
                      f"{i.heartbeat_ms:.0f} ms" if i.heartbeat_ms is not None else "-", i.version or "-",
                      i.url or "-", auth, "?" if i.pending is None else "; ".join(i.pending) or "-",
                      i.image or "-", i.volume or "-")
    stdout().print(table)
    for i in instances:
        _data_line(i)
    for i in instances:
        if i.tls and i.tls["days_left"] < TLS_WARN_DAYS:
            warn(f"{i.name}: its certificate expires in {i.tls['days_left']} days: `chromactl tls renew`")
        if i.costly_users:
            warn(f"{i.name}: every request by {', '.join(i.costly_users)} costs the server a slow bcrypt hash "
                 f"(cost above {CHEAP_ROUNDS}); `chromactl creds rotate USER` re-hashes it (a generated password "
                 "is always cheap)")
        if i.problem:
            warn(f"{i.name}: {i.problem}" + (f" ({i.hint})" if i.hint else ""))
        elif i.pending:
            stderr().print(f"{i.name}: changed since it started ({'; '.join(i.pending)}): run `chromactl up`",
                           markup=False)


def tls_result(result: TlsResult, as_json: bool, *, renewed: bool = False) -> None:
    info = result.material.info
    if as_json:
        print_json({"mode": result.mode, "ca": str(result.material.ca_path), "ca_fingerprint": result.ca_fingerprint,
                    "names": list(info.names), "not_after": info.not_after.isoformat(), "days_left": info.days_left,
                    "fingerprint": info.fingerprint, "applied": result.applied})
        return
    out = stdout()
    if renewed:
        applied = result.applied or ""
        out.print(f"Issued a new server certificate. {applied}".rstrip(), markup=False)
    out.print(f"CA (clients trust this): {result.material.ca_path}", markup=False)
    out.print(f"CA SHA-256 fingerprint:  {result.ca_fingerprint}", markup=False)
    out.print(f"Server certificate:      {', '.join(info.names)}; expires {info.not_after:%Y-%m-%d} "
              f"({info.days_left} days)", markup=False)
    out.print(f"Python: ssl=True, Settings(chroma_server_ssl_verify=\"{result.material.ca_path}\")   "
              f"Node: NODE_EXTRA_CA_CERTS={result.material.ca_path}", markup=False)
    if info.days_left < TLS_WARN_DAYS:
        warn(f"the certificate expires in {info.days_left} days: `chromactl tls renew`")


def down_result(result: DownResult, as_json: bool) -> None:
    if as_json:
        print_json({"container": result.container, "removed": result.removed, "volume": result.volume,
                    "volume_removed": result.volume_removed, "gateway": result.gateway,
                    "other_volumes": list(result.other_volumes)})
        return
    out = stdout()
    out.print(f"Removed container {result.container}." if result.removed else f"No container {result.container}.",
              markup=False)
    if result.gateway:
        out.print(f"Removed gateway {result.gateway}.", markup=False)
    if result.volume_removed:
        out.print(f"Deleted volume {result.volume} and its data.", markup=False)
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
