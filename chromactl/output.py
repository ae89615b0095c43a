"""One place that turns command results into text for people or JSON for programs.

stdout carries data; warnings and progress go to stderr. JSON is printed plainly,
never through a console that could wrap or colour it. Secrets are printed once, on
a line of their own, without markup.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console
from rich.table import Table

from chromactl.commands.creds import ListResult, RemoveResult, SecretResult
from chromactl.commands.init import InitResult
from chromactl.envfile import describe_auth
from chromactl.errors import ChromactlError


def stdout() -> Console:
    return Console(highlight=False, soft_wrap=True)


def stderr() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)


def print_json(document: Any) -> None:
    sys.stdout.write(json.dumps(document, indent=2) + "\n")
    sys.stdout.flush()


def warn(message: str) -> None:
    stderr().print(f"[yellow]warning:[/yellow] {message}", markup=True)


def error(exc: ChromactlError) -> None:
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


def init_result(result: InitResult, as_json: bool) -> None:
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
    if result.kept_users:
        out.print(f"  kept users: {', '.join(result.kept_users)}", markup=False)
    for backup in result.backups:
        out.print(f"  old credentials saved in {backup}", markup=False)
    if not s.auth_enabled:
        warn("auth is none: anyone who can reach the port can read and change all data")
    if result.secret is not None:
        kind = "token" if s.auth == "token" else "password"
        _show_secret(kind, f"user {result.user!r} (role {result.role})", result.secret)
    out.print("Next: chromactl up", markup=False)


def secret_result(result: SecretResult, as_json: bool, *, rotated: bool = False) -> None:
    for message in result.warnings:
        warn(message)
    if as_json:
        print_json({"user": result.user, "role": result.role, "secret": result.secret})
        return
    verb = "New" if rotated else "Added user"
    if rotated:
        stdout().print(f"{verb} {result.kind} for {result.user!r} (role {result.role}). "
                       "The old one stops working once the server is recreated (chromactl up).", markup=False)
    else:
        stdout().print(f"{verb} {result.user!r} (role {result.role}). Apply with chromactl up.", markup=False)
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
        print_json({"user": result.user, "removed": True})
        return
    stdout().print(f"Removed user {result.user!r}. Apply with chromactl up.", markup=False)
