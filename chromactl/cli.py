"""The command line: wiring only. Each command resolves its arguments, calls one
function under chromactl.commands, and hands the result to chromactl.output.

Modules are imported inside the commands so that `chromactl --help` stays fast and
commands that never talk to Docker never import the Docker SDK.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Callable, Optional

import typer
from typing_extensions import Annotated

from chromactl import __version__
from chromactl.errors import ChromactlError

app = typer.Typer(
    name="chromactl",
    help="Run the Chroma vector database in Docker, locked down, and prove it.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion for bash, zsh and fish
    pretty_exceptions_enable=False,  # plain tracebacks for bugs, never with locals (secrets live there)
    rich_markup_mode=None,
)
creds_app = typer.Typer(help="Manage the users, passwords and tokens of a project.", no_args_is_help=True)
app.add_typer(creds_app, name="creds")
export_app = typer.Typer(help="Export the project for an orchestrator: compose or kubernetes.", no_args_is_help=True)
app.add_typer(export_app, name="export")
tls_app = typer.Typer(help="The project's TLS certificate: show it, renew it.", no_args_is_help=True)
app.add_typer(tls_app, name="tls")


class AuthMode(str, Enum):
    token = "token"
    basic = "basic"
    none = "none"


class Gateway(str, Enum):
    nginx = "nginx"
    none = "none"


class TlsMode(str, Enum):
    auto = "auto"
    files = "files"
    off = "off"


class TokenHeader(str, Enum):
    authorization = "Authorization"
    x_chroma_token = "X-Chroma-Token"


@dataclass
class State:
    root: Path


JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
RoundsOption = Annotated[Optional[int], typer.Option(
    "--bcrypt-rounds", envvar="CHROMACTL_BCRYPT_ROUNDS", help="bcrypt cost of chosen passwords, 4-14; generated ones always use 4. [default: 6]")]


def _version(value: bool) -> None:
    if value:
        print(f"chromactl {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    directory: Annotated[Optional[Path], typer.Option(
        "--dir", "-C", envvar="CHROMACTL_DIR", help="Project folder (default: the current folder).",
        file_okay=False)] = None,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """Run the Chroma vector database in Docker, locked down, and prove it.

    A project is a folder holding chromactl.yaml, .chroma_env and the credential files.
    Settings follow: command-line flag > CHROMACTL_* environment variable > chromactl.yaml > default.
    """
    ctx.obj = State(root=(directory or Path.cwd()).absolute())


def _root(ctx: typer.Context) -> Path:
    return ctx.find_object(State).root


# --- secrets from stdin or a prompt -----------------------------------------------


def _read_stdin_secret(flag: str) -> str:
    data = sys.stdin.read()
    if data.endswith("\n"):
        data = data[:-1]
    if data.endswith("\r"):
        data = data[:-1]
    if not data:
        raise ChromactlError(f"{flag}: standard input is empty")
    if "\n" in data or "\r" in data:
        raise ChromactlError(f"{flag}: expected one line on standard input, got several")
    return data


def _secret_source(password_stdin: bool, token_stdin: bool):
    def source(kind: str) -> str | None:
        if kind == "password" and token_stdin:
            raise ChromactlError("--token-stdin is for token auth; this project uses basic auth (use --password-stdin)")
        if kind == "token" and password_stdin:
            raise ChromactlError("--password-stdin is for basic auth; this project uses tokens (use --token-stdin)")
        if password_stdin or token_stdin:
            return _read_stdin_secret("--password-stdin" if password_stdin else "--token-stdin")
        if kind == "password" and sys.stdin.isatty() and sys.stderr.isatty():
            password = typer.prompt("New password (empty to generate one)", default="", hide_input=True,
                                    confirmation_prompt=True, show_default=False, err=True)
            return password or None
        return None  # generate one

    return source


# --- init -------------------------------------------------------------------------


@app.command()
def init(
    ctx: typer.Context,
    name: Annotated[Optional[str], typer.Option(envvar="CHROMACTL_NAME", help="Instance name (default: the folder's name).")] = None,
    auth: Annotated[Optional[AuthMode], typer.Option(envvar="CHROMACTL_AUTH", help="How clients authenticate. [default: token]")] = None,
    rbac: Annotated[Optional[bool], typer.Option("--rbac/--no-rbac", envvar="CHROMACTL_RBAC",
                                                 help="Role-based access control. [default: on with auth]")] = None,
    token_header: Annotated[Optional[TokenHeader], typer.Option(envvar="CHROMACTL_TOKEN_HEADER",
                                                                help="Header that carries the token. [default: Authorization]")] = None,
    image: Annotated[Optional[str], typer.Option(envvar="CHROMACTL_IMAGE", help="Chroma image. [default: chromadb/chroma:0.6.3]")] = None,
    port: Annotated[Optional[int], typer.Option(envvar="CHROMACTL_PORT", help="Host port. [default: 8000]")] = None,
    host: Annotated[Optional[str], typer.Option(envvar="CHROMACTL_HOST",
                                                help="Host address. [default: 0.0.0.0 with auth, 127.0.0.1 without]")] = None,
    gateway: Annotated[Optional[Gateway], typer.Option(
        envvar="CHROMACTL_GATEWAY",
        help="An nginx auth gateway in front of Chroma. [default: nginx for 1.x/latest images with auth, else none]")] = None,
    gateway_image: Annotated[Optional[str], typer.Option(envvar="CHROMACTL_GATEWAY_IMAGE",
                                                         help="Gateway image. [default: nginx:1.27.5]")] = None,
    bcrypt_rounds: RoundsOption = None,
    tls: Annotated[Optional[TlsMode], typer.Option(
        envvar="CHROMACTL_TLS",
        help="TLS: auto (a CA of the project's own), files (yours), or off. [default: auto beyond loopback]")] = None,
    tls_san: Annotated[Optional[list[str]], typer.Option(
        "--tls-san", metavar="NAME", help="Another name (DNS or IP) for the auto certificate; repeatable.")] = None,
    tls_cert: Annotated[Optional[str], typer.Option(metavar="PATH", help="tls files: the certificate, with its chain.")] = None,
    tls_key: Annotated[Optional[str], typer.Option(metavar="PATH", help="tls files: its private key.")] = None,
    tls_ca: Annotated[Optional[str], typer.Option(metavar="PATH", help="tls files: the CA clients are to trust.")] = None,
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="Basic auth: read the admin password from stdin.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Rewrite an existing project's settings (credentials are kept).")] = False,
    as_json: JsonOption = False,
) -> None:
    """Create a chromactl project: settings, .chroma_env and credentials.

    Creates user 'admin' with role admin and prints its token (or, with --auth basic,
    its password) once.

    Example: chromactl init --auth basic --port 8001
    """
    from chromactl import output
    from chromactl.commands.init import init_project

    given = {"name": name, "auth": auth.value if auth else None, "rbac": rbac,
             "token_header": token_header.value if token_header else None,
             "image": image, "port": port, "host": host,
             "gateway": gateway.value if gateway else None, "gateway_image": gateway_image,
             "bcrypt_rounds": bcrypt_rounds, "tls": tls.value if tls else None,
             "tls_san": tuple(tls_san) if tls_san else None, "tls_cert": tls_cert, "tls_key": tls_key, "tls_ca": tls_ca}
    if token_header is not None and (auth or AuthMode.token) != AuthMode.token:
        raise ChromactlError("--token-header applies to token auth only")
    read_password = (lambda: _read_stdin_secret("--password-stdin")) if password_stdin else None
    result = init_project(_root(ctx), given, force=force, read_password=read_password)
    output.init_result(result, as_json)


def _init_settings_from_env() -> dict:
    """The CHROMACTL_* settings `init` would take, for the init that `up` runs in an
    empty folder (precedence holds there too: environment over default)."""
    import os

    def value(key: str):
        return os.environ.get(f"CHROMACTL_{key.upper()}") or None

    given = {key: value(key) for key in ("name", "auth", "token_header", "image", "host", "gateway", "gateway_image",
                                         "tls")}
    for key in ("port", "bcrypt_rounds"):
        number = value(key)
        if number is not None:
            try:
                given[key] = int(number)
            except ValueError:
                raise ChromactlError(f"CHROMACTL_{key.upper()}: not a number: {number!r}") from None
    rbac = value("rbac")
    if rbac is not None:
        truth = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}
        if rbac.lower() not in truth:
            raise ChromactlError(f"CHROMACTL_RBAC: expected true or false, not {rbac!r}")
        given["rbac"] = truth[rbac.lower()]
    return given


# --- creds ------------------------------------------------------------------------

PasswordStdin = Annotated[bool, typer.Option("--password-stdin", help="Basic auth: read the password from stdin.")]
NoApply = Annotated[bool, typer.Option("--no-apply", help="Only change the files; the running server gets it at the next `up`.")]


def _applied(ctx: typer.Context, result, no_apply: bool, as_json: bool):
    """The result of a credentials change, applied to the running server unless told not to."""
    if no_apply:
        return result
    from dataclasses import replace

    from chromactl import output
    from chromactl.commands.creds import apply_change

    return replace(result, applied=apply_change(_root(ctx), output.ProgressReporter(as_json)))
TokenStdin = Annotated[bool, typer.Option("--token-stdin", help="Token auth: read the token from stdin.")]


@creds_app.command("add")
def creds_add(
    ctx: typer.Context,
    user: Annotated[str, typer.Argument(help="User name.")],
    role: Annotated[Optional[str], typer.Option(help="admin, writer or reader. [default: reader]")] = None,
    password_stdin: PasswordStdin = False,
    token_stdin: TokenStdin = False,
    bcrypt_rounds: RoundsOption = None,
    no_apply: NoApply = False,
    as_json: JsonOption = False,
) -> None:
    """Add a user and print its new secret once.

    Tokens are generated unless given with --token-stdin; passwords are asked for on
    a terminal, read with --password-stdin, or generated.

    Example: chromactl creds add alice --role writer
    """
    from chromactl import output
    from chromactl.commands.creds import add_user

    result = add_user(_root(ctx), user, role, _secret_source(password_stdin, token_stdin),
                      {"bcrypt_rounds": bcrypt_rounds})
    output.secret_result(_applied(ctx, result, no_apply, as_json), as_json)


@creds_app.command("rotate")
def creds_rotate(
    ctx: typer.Context,
    user: Annotated[str, typer.Argument(help="User name.")],
    password_stdin: PasswordStdin = False,
    token_stdin: TokenStdin = False,
    bcrypt_rounds: RoundsOption = None,
    no_apply: NoApply = False,
    as_json: JsonOption = False,
) -> None:
    """Give a user a new password or token; the old one stops working.

    Example: chromactl creds rotate alice
    """
    from chromactl import output
    from chromactl.commands.creds import rotate_user

    result = rotate_user(_root(ctx), user, _secret_source(password_stdin, token_stdin),
                         {"bcrypt_rounds": bcrypt_rounds})
    output.secret_result(_applied(ctx, result, no_apply, as_json), as_json, rotated=True)


@creds_app.command("rm")
def creds_rm(
    ctx: typer.Context,
    user: Annotated[str, typer.Argument(help="User name.")],
    force: Annotated[bool, typer.Option("--force", help="Remove even the last admin.")] = False,
    no_apply: NoApply = False,
    as_json: JsonOption = False,
) -> None:
    """Remove a user.

    Example: chromactl creds rm alice
    """
    from chromactl import output
    from chromactl.commands.creds import remove_user

    result = remove_user(_root(ctx), user, force=force)
    output.remove_result(_applied(ctx, result, no_apply, as_json), as_json)


@creds_app.command("list")
def creds_list(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """List users, their roles and how many tokens each has; never a secret.

    Example: chromactl creds list --json
    """
    from chromactl import output
    from chromactl.commands.creds import list_users

    output.list_result(list_users(_root(ctx)), as_json)


# --- the container lifecycle -------------------------------------------------------------


class PullPolicy(str, Enum):
    missing = "missing"
    always = "always"
    never = "never"


@app.command()
def up(
    ctx: typer.Context,
    pull: Annotated[PullPolicy, typer.Option(envvar="CHROMACTL_PULL", help="When to pull the image.")] = PullPolicy.missing,
    build: Annotated[Optional[str], typer.Option(
        metavar="CONTEXT", help="Build the image from a folder with a Dockerfile (or a git URL) instead of pulling.")] = None,
    timeout: Annotated[float, typer.Option(min=1, help="Seconds to wait for the server to answer.")] = 60,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the equivalent docker run command; change nothing.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Start the project's Chroma server and prove it: the heartbeat answers, a request
    without credentials is refused and chromactl's probe credential is accepted.

    In a folder without a project, runs `chromactl init` first (printing the admin secret
    once). Running it again changes nothing; after `creds` changes it recreates the
    container, keeping the data volume. Without a registry, build the image: --build DIR.

    Example: chromactl up --pull never
    """
    from chromactl import output
    from chromactl.commands.up import up as run_up

    result = run_up(_root(ctx), output.ProgressReporter(as_json), pull=pull.value, build=build,
                    timeout=timeout, dry_run=dry_run, init_settings=_init_settings_from_env())
    output.up_result(result, as_json)


@app.command()
def status(
    ctx: typer.Context,
    all_instances: Annotated[bool, typer.Option("--all", help="Every chromactl container on the engine.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Show state, health, heartbeat latency, version, URL, volume, whether auth is
    really enforced (probed), and whether the files changed since the container started.
    Exits 4 when an instance is down or unhealthy.

    Example: chromactl status --all --json
    """
    from chromactl import output
    from chromactl.commands.status import status as run_status
    from chromactl.errors import EXIT_NOT_HEALTHY

    instances = run_status(_root(ctx), all_instances=all_instances)
    output.status_result(instances, as_json)
    if any(not i.healthy for i in instances):
        raise typer.Exit(EXIT_NOT_HEALTHY)


@app.command()
def down(
    ctx: typer.Context,
    volumes: Annotated[bool, typer.Option("--volumes", help="Also delete the data volume (asks first).")] = False,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask before deleting the data volume.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Stop and remove the container. The data volume is kept unless --volumes is given
    and confirmed (on a terminal, or with --yes).

    Example: chromactl down
    """
    from chromactl import output
    from chromactl.commands.down import down as run_down

    def confirm(volume: str) -> bool:
        if yes:
            return True
        if not sys.stdin.isatty():
            return False
        return typer.confirm(f"Delete volume {volume} and all the data in it? (a backup first: chromactl backup)",
                             default=False, err=True)

    output.down_result(run_down(_root(ctx), volumes=volumes, confirm=confirm), as_json)


@app.command()
def logs(
    ctx: typer.Context,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new lines.")] = False,
    tail: Annotated[Optional[int], typer.Option("--tail", "-n", min=0, help="Only the last N lines.")] = None,
    service: Annotated[str, typer.Option(help="chroma, or gateway when the project has one.")] = "chroma",
) -> None:
    """Print the server's logs, or the gateway's with --service gateway.

    Example: chromactl logs -n 50 -f
    """
    from chromactl.commands.logs import logs as run_logs

    try:
        for chunk in run_logs(_root(ctx), tail=tail, follow=follow, service=service):
            sys.stdout.buffer.write(chunk)
            sys.stdout.buffer.flush()
    except KeyboardInterrupt:
        pass


# --- export -------------------------------------------------------------------------------

OutputOption = Annotated[Optional[Path], typer.Option("--output", "-o", dir_okay=False,
                                                      help="Write to this file instead of stdout.")]


def _emit(text: str, output: Optional[Path]) -> None:
    if output is None:
        sys.stdout.write(text)
    else:
        from chromactl import output as out

        out.stderr().print(f"wrote {output}", markup=False)


@export_app.command("compose")
def export_compose(ctx: typer.Context, output: OutputOption = None) -> None:
    """A Compose file: the image, the env file, the credential files mounted read-only,
    the data volume, the port, restart policy and a health check that needs only bash.

    Example: chromactl export compose | docker compose -f - config
    """
    from chromactl.commands.export import export_compose as run

    _emit(run(_root(ctx), output), output)


@export_app.command("kubernetes")
def export_kubernetes(
    ctx: typer.Context,
    output: OutputOption = None,
    namespace: Annotated[Optional[str], typer.Option(help="Namespace of every object.")] = None,
) -> None:
    """Kubernetes manifests: a Secret with the credential files and settings, a
    StatefulSet with a volume claim and heartbeat probes, and a Service.

    Example: chromactl export kubernetes --namespace search | kubectl apply -f -
    """
    from chromactl.commands.export import export_kubernetes as run

    _emit(run(_root(ctx), output, namespace), output)


# --- tls ------------------------------------------------------------------------------------


@tls_app.command("show")
def tls_show(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Show the CA clients must trust (its path and SHA-256 fingerprint, to pin it) and the
    server certificate's names and expiry.

    Example: chromactl tls show
    """
    from chromactl import output
    from chromactl.commands.tls import show

    output.tls_result(show(_root(ctx)), as_json)


@tls_app.command("renew")
def tls_renew(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Issue a new server certificate from the project's CA and put it in service: the gateway
    reloads; Chroma serving TLS itself (0.x) is recreated, which the output says.

    Example: chromactl tls renew
    """
    from chromactl import output
    from chromactl.commands.tls import renew

    output.tls_result(renew(_root(ctx), output.ProgressReporter(as_json)), as_json, renewed=True)


def main() -> None:
    try:
        app()
    except ChromactlError as exc:
        from chromactl import output

        output.error(exc)
        sys.exit(exc.exit_code)


# --- data: backup, restore, upgrade ------------------------------------------------------

TimeoutOption = Annotated[float, typer.Option(min=1, help="Seconds to wait for the server to answer after a start.")]


def _confirm(yes: bool) -> Callable[[str], bool]:
    def confirm(question: str) -> bool:
        if yes:
            return True
        if not sys.stdin.isatty():
            return False
        return typer.confirm(question, default=False, err=True)

    return confirm


@app.command()
def backup(
    ctx: typer.Context,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", dir_okay=False,
                                                   help="The backup file. [default: backups/NAME-TIME.chromactl-backup.tar]")] = None,
    include_credentials: Annotated[bool, typer.Option(
        "--include-credentials", help="Also store the project files with their secrets (the file is 0600 either way).")] = False,
    timeout: TimeoutOption = 60,
    as_json: JsonOption = False,
) -> None:
    """Write a consistent backup of the instance's data: stop Chroma, stream its volume
    into an archive with a manifest (image, data fingerprint, collections and counts,
    sha256), start it again and prove it answers. Clients get errors meanwhile (about a
    second per 50 MB). No credentials are stored unless --include-credentials.

    Example: chromactl backup -o /srv/backups/search.tar
    """
    from chromactl import output_data
    from chromactl.commands.backup import backup as run_backup

    result = run_backup(_root(ctx), output, output_data.DataReporter(as_json),
                        include_credentials=include_credentials, timeout=timeout)
    output_data.backup_result(result, as_json)


@app.command()
def restore(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="A file written by `chromactl backup`.", dir_okay=False)],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask before replacing the data.")] = False,
    timeout: TimeoutOption = 60,
    as_json: JsonOption = False,
) -> None:
    """Restore a backup: check its sha256 and that this project's image reads its data,
    fill a new volume, start the server on it, compare the counts with the manifest, and
    only then keep it. The previous volume is kept until you remove it.

    Example: chromactl restore backups/search-20261130T010000Z.chromactl-backup.tar --yes
    """
    from chromactl import output_data
    from chromactl.commands.restore import restore as run_restore

    result = run_restore(_root(ctx), file, output_data.DataReporter(as_json), confirm=_confirm(yes), timeout=timeout)
    output_data.restore_result(result, as_json)


@app.command()
def upgrade(
    ctx: typer.Context,
    image: Annotated[Optional[str], typer.Option(help="The Chroma 1.x image to upgrade to, e.g. chromadb/chroma:1.5.9.")] = None,
    rollback: Annotated[bool, typer.Option("--rollback", help="Go back to the image and volume from before the last upgrade.")] = False,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask first.")] = False,
    timeout: TimeoutOption = 60,
    as_json: JsonOption = False,
) -> None:
    """Upgrade Chroma 0.5/0.6 to 1.x (or to a later 1.x): a backup first, a copy of the
    data in a new volume, the gateway for the same users, tokens and roles, then proof:
    counts and sample queries equal before and after, the data's fingerprint, no ERROR in
    the log. On any mismatch nothing is switched and the old server runs again.

    Example: chromactl upgrade --image chromadb/chroma:1.5.9
    """
    from chromactl import output_data
    from chromactl.commands import upgrade as upgrading

    reporter = output_data.DataReporter(as_json)
    if rollback:
        if image:
            raise ChromactlError("--rollback takes no --image: it goes back to the image from before the upgrade")
        output_data.rollback_result(upgrading.rollback(_root(ctx), reporter, confirm=_confirm(yes), timeout=timeout),
                                    as_json)
        return
    if not image:
        raise ChromactlError("name the image to upgrade to: --image IMAGE")
    result = upgrading.upgrade(_root(ctx), image, reporter, confirm=_confirm(yes), timeout=timeout)
    output_data.upgrade_result(result, as_json)
