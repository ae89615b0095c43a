"""The command line: wiring only. Each command resolves its arguments, calls one
function under chromactl.commands, and hands the result to chromactl.output.

Modules are imported inside the commands so that `chromactl --help` stays fast and
commands that never talk to the engine never import the Docker SDK. Help texts take
their defaults from the constants the code uses, so they cannot drift.
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
from chromactl.clients import DEFAULT_DATABASE
from chromactl.credentials import GENERATED_ROUNDS, MIN_PASSWORD_LENGTH
from chromactl.errors import EXIT_INTERRUPTED, Cancelled, ChromactlError, UsageError
from chromactl.roles import ACTIONS
from chromactl.settings import (
    DEFAULT_BCRYPT_ROUNDS,
    DEFAULT_GATEWAY_IMAGE,
    DEFAULT_IMAGE,
    DEFAULT_PORT,
    MAX_BCRYPT_ROUNDS,
    MIN_BCRYPT_ROUNDS,
)

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
tenant_app = typer.Typer(help="Chroma's tenants and their databases, made and listed as the project's admin.",
                         no_args_is_help=True)
app.add_typer(tenant_app, name="tenant")


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


class PullPolicy(str, Enum):
    missing = "missing"
    always = "always"
    never = "never"


@dataclass
class State:
    directory: Path | None  # --dir / CHROMACTL_DIR, as given


# --- completion: names the project knows, read quietly (no output, no engine) --------------------


def _quiet_project(ctx: typer.Context, settings_only: bool = False):
    """The project the command line names (--dir, CHROMACTL_DIR, or the nearest parent
    holding one), or None: completion never prints, never fails, never asks the engine."""
    from chromactl.project import find_project, load_project, load_settings

    directory = ctx.find_root().params.get("directory")
    try:
        root = Path(directory).absolute() if directory else find_project(Path.cwd())
        if root is None:
            return None
        return load_settings(root) if settings_only else load_project(root)
    except (ChromactlError, OSError, ValueError):
        return None


def _matching(values, incomplete: str) -> list[str]:
    return [v for v in dict.fromkeys(values) if v and v.startswith(incomplete)]


def _complete_users(ctx: typer.Context, incomplete: str) -> list[str]:
    from chromactl.credentials import PROBE_USER

    project = _quiet_project(ctx)
    if project is None:
        return []
    removable = ctx.command.name != "rm"  # the probe user can be rotated, never removed
    return _matching((u.name for u in project.credentials.users if removable or u.name != PROBE_USER), incomplete)


def _complete_roles(ctx: typer.Context, incomplete: str) -> list[str]:
    from chromactl.roles import BUILTIN_ROLES, PROBE_ROLE

    project = _quiet_project(ctx)
    roles = (project.credentials.roles if project is not None and project.credentials.roles else BUILTIN_ROLES)
    return _matching((r for r in roles if r != PROBE_ROLE), incomplete)


def _complete_services(ctx: typer.Context, incomplete: str) -> list[str]:
    settings = _quiet_project(ctx, settings_only=True)
    return _matching(["chroma"] + (["gateway"] if settings is not None and settings.uses_gateway else []), incomplete)


def _complete_images(ctx: typer.Context, incomplete: str) -> list[str]:
    settings = _quiet_project(ctx, settings_only=True)
    return _matching([settings.image if settings else None, DEFAULT_IMAGE], incomplete)


def _complete_gateway_images(ctx: typer.Context, incomplete: str) -> list[str]:
    settings = _quiet_project(ctx, settings_only=True)
    return _matching([settings.gateway_image if settings else None, DEFAULT_GATEWAY_IMAGE], incomplete)


JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout (errors too).")]
RoundsOption = Annotated[Optional[int], typer.Option(
    "--bcrypt-rounds", envvar="CHROMACTL_BCRYPT_ROUNDS",
    help=f"bcrypt cost of chosen passwords, {MIN_BCRYPT_ROUNDS}-{MAX_BCRYPT_ROUNDS} (generated ones: bcrypt "
         f"{GENERATED_ROUNDS} natively, salted SHA-1 behind the gateway). [default: {DEFAULT_BCRYPT_ROUNDS}]")]

# The settings `init` takes; `up` takes them too (hidden) for the project it creates in an
# empty folder, so that CHROMACTL_* variables are parsed once, by the same rules.
NameOption = Annotated[Optional[str], typer.Option(envvar="CHROMACTL_NAME", help="Instance name (default: the folder's name).")]
AuthOption = Annotated[Optional[AuthMode], typer.Option(envvar="CHROMACTL_AUTH", help="How clients authenticate. [default: token]")]
RbacOption = Annotated[Optional[bool], typer.Option("--rbac/--no-rbac", envvar="CHROMACTL_RBAC",
                                                    help="Role-based access control. [default: on with auth]")]
TokenHeaderOption = Annotated[Optional[TokenHeader], typer.Option(
    envvar="CHROMACTL_TOKEN_HEADER", help="Header that carries the token. [default: Authorization]")]
ImageOption = Annotated[Optional[str], typer.Option(envvar="CHROMACTL_IMAGE", help=f"Chroma image. [default: {DEFAULT_IMAGE}]",
                                                    autocompletion=_complete_images)]
PortOption = Annotated[Optional[int], typer.Option(envvar="CHROMACTL_PORT",
                                                   help=f"Host port. [default: {DEFAULT_PORT}]")]
HostOption = Annotated[Optional[str], typer.Option(envvar="CHROMACTL_HOST",
                                                   help="Host address. [default: 0.0.0.0 with auth, 127.0.0.1 without]")]
GatewayOption = Annotated[Optional[Gateway], typer.Option(
    envvar="CHROMACTL_GATEWAY",
    help="An nginx auth gateway in front of Chroma. [default: nginx for 1.x/latest images with auth, else none]")]
GatewayImageOption = Annotated[Optional[str], typer.Option(
    envvar="CHROMACTL_GATEWAY_IMAGE", help=f"Gateway image. [default: {DEFAULT_GATEWAY_IMAGE}]",
    autocompletion=_complete_gateway_images)]
TlsOption = Annotated[Optional[TlsMode], typer.Option(
    envvar="CHROMACTL_TLS", help="TLS: auto (a CA of the project's own), files (yours), or off. "
                                 "[default: auto beyond loopback]")]


def _hidden(option):
    """The same option, hidden from --help (for `up`, which passes it to the init it may run)."""
    import copy

    kind, info = option.__origin__, copy.copy(option.__metadata__[0])
    info.hidden = True
    return Annotated[kind, info]


def _version(value: bool) -> None:
    if value:
        print(f"chromactl {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    directory: Annotated[Optional[Path], typer.Option(
        "--dir", "-C", envvar="CHROMACTL_DIR",
        help="Project folder (default: the current folder, or the nearest parent holding chromactl.yaml).",
        file_okay=False)] = None,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """Run the Chroma vector database in Docker, locked down, and prove it.

    A project is a folder holding chromactl.yaml, .chroma_env and the credential files.
    Settings follow: command-line flag > CHROMACTL_* environment variable > chromactl.yaml > default.
    """
    ctx.obj = State(directory=directory)


def _root(ctx: typer.Context, *, here: bool = False) -> Path:
    """The project folder: --dir, else the nearest folder at or above the current one that
    holds a project (said on stderr when it is a parent), else the current folder. With
    `here`, the current folder only (init)."""
    from chromactl.project import find_project

    given = ctx.find_object(State).directory
    if given is not None:
        return given.absolute()
    cwd = Path.cwd()
    if here:
        return cwd
    found = find_project(cwd)
    if found is not None and found != cwd:
        from chromactl import output

        output.stderr().print(f"using the project in {found}", markup=False)
    return found or cwd


def _connect():
    """Connect to the container engine; only commands that talk to it import the SDK."""
    from chromactl.engine import DockerEngine

    return DockerEngine.connect()


# --- secrets from stdin or a prompt -----------------------------------------------


def _read_stdin_secret(flag: str) -> str:
    data = sys.stdin.read()
    if data.endswith("\n"):
        data = data[:-1]
    if data.endswith("\r"):
        data = data[:-1]
    if not data:
        raise UsageError(f"{flag}: standard input is empty")
    if "\n" in data or "\r" in data:
        raise UsageError(f"{flag}: expected one line on standard input, got several")
    return data


def _engine_address() -> str:
    """The engine's address, read (never asked): only commands that print a server's address
    import the Docker SDK for it."""
    from chromactl.engine import engine_address

    return engine_address()[0]


def _secret_source(password_stdin: bool, token_stdin: bool):
    def source(kind: str) -> str | None:
        if kind == "password" and token_stdin:
            raise UsageError("--token-stdin is for token auth; this project uses basic auth (use --password-stdin)")
        if kind == "token" and password_stdin:
            raise UsageError("--password-stdin is for basic auth; this project uses tokens (use --token-stdin)")
        if password_stdin or token_stdin:
            return _read_stdin_secret("--password-stdin" if password_stdin else "--token-stdin")
        if kind == "password" and sys.stdin.isatty() and sys.stderr.isatty():
            password = typer.prompt("New password (empty to generate one)", default="", hide_input=True,
                                    confirmation_prompt=True, show_default=False, err=True)
            return password or None
        return None  # generate one

    return source


def _confirm(yes: bool) -> Callable[[str], bool]:
    def confirm(question: str) -> bool:
        if yes:
            return True
        if not sys.stdin.isatty():
            return False
        from chromactl.output import printable

        return typer.confirm(printable(question), default=False, err=True)

    return confirm


def _settings_given(name, auth, rbac, token_header, image, port, host, gateway, gateway_image, bcrypt_rounds,
                    tls, tls_san=None, tls_cert=None, tls_key=None, tls_ca=None) -> dict:
    return {"name": name, "auth": auth.value if auth else None, "rbac": rbac,
            "token_header": token_header.value if token_header else None,
            "image": image, "port": port, "host": host,
            "gateway": gateway.value if gateway else None, "gateway_image": gateway_image,
            "bcrypt_rounds": bcrypt_rounds, "tls": tls.value if tls else None,
            "tls_san": tuple(tls_san) if tls_san else None, "tls_cert": tls_cert, "tls_key": tls_key, "tls_ca": tls_ca}


# --- init -------------------------------------------------------------------------


@app.command()
def init(
    ctx: typer.Context,
    name: NameOption = None,
    auth: AuthOption = None,
    rbac: RbacOption = None,
    token_header: TokenHeaderOption = None,
    image: ImageOption = None,
    port: PortOption = None,
    host: HostOption = None,
    gateway: GatewayOption = None,
    gateway_image: GatewayImageOption = None,
    bcrypt_rounds: RoundsOption = None,
    tls: TlsOption = None,
    tls_san: Annotated[Optional[list[str]], typer.Option(
        "--tls-san", metavar="NAME", help="Another name (DNS or IP) for the auto certificate; repeatable.")] = None,
    tls_cert: Annotated[Optional[str], typer.Option(metavar="PATH", help="tls files: the certificate, with its chain.")] = None,
    tls_key: Annotated[Optional[str], typer.Option(metavar="PATH", help="tls files: its private key.")] = None,
    tls_ca: Annotated[Optional[str], typer.Option(metavar="PATH", help="tls files: the CA clients are to trust.")] = None,
    password_stdin: Annotated[bool, typer.Option(
        "--password-stdin", help=f"Basic auth: read the admin password from stdin ({MIN_PASSWORD_LENGTH}+ "
                                 "characters).")] = False,
    force: Annotated[bool, typer.Option("--force", help="Rewrite an existing project's settings (credentials are kept).")] = False,
    as_json: JsonOption = False,
) -> None:
    """Create a chromactl project: settings, .chroma_env and credentials.

    Creates user 'admin' with role admin and prints its token (or, with --auth basic,
    its password) once.

    Example: chromactl init --auth basic --port 8001
    """
    from chromactl import output
    from chromactl.commands.init import init as run_init

    given = _settings_given(name, auth, rbac, token_header, image, port, host, gateway, gateway_image, bcrypt_rounds,
                            tls, tls_san, tls_cert, tls_key, tls_ca)
    if token_header is not None and (auth or AuthMode.token) != AuthMode.token:
        raise UsageError("--token-header applies to token auth only")
    read_password = (lambda: _read_stdin_secret("--password-stdin")) if password_stdin else None
    output.init_result(run_init(_root(ctx, here=True), given, force=force, read_password=read_password), as_json)


# --- creds ------------------------------------------------------------------------

PasswordStdin = Annotated[bool, typer.Option("--password-stdin", help="Basic auth: read the password from stdin.")]
TokenStdin = Annotated[bool, typer.Option("--token-stdin", help="Token auth: read the token from stdin.")]
NoApply = Annotated[bool, typer.Option("--no-apply", help="Only change the files; the running server gets it at the next `up`.")]


def _finish(effect) -> None:
    """A change that did not reach the running server where it had to exits non-zero."""
    if effect is not None and effect.exit_code:
        raise typer.Exit(effect.exit_code)


@creds_app.command("add")
def creds_add(
    ctx: typer.Context,
    user: Annotated[str, typer.Argument(help="User name.")],
    role: Annotated[Optional[str], typer.Option(help="admin, writer or reader. [default: reader]",
                                                autocompletion=_complete_roles)] = None,
    tenant: Annotated[Optional[str], typer.Option(
        metavar="TENANT", help="Scope the user to this tenant (behind the gateway): it reaches nothing else.")] = None,
    database: Annotated[Optional[list[str]], typer.Option(
        "--database", metavar="DATABASE",
        help="With --tenant: only this database of it; repeatable. [default: all of the tenant's]")] = None,
    password_stdin: PasswordStdin = False,
    token_stdin: TokenStdin = False,
    bcrypt_rounds: RoundsOption = None,
    no_apply: NoApply = False,
    as_json: JsonOption = False,
) -> None:
    """Add a user and print its new secret once; a running server gets it at once.

    Tokens are generated unless given with --token-stdin; passwords are asked for on
    a terminal, read with --password-stdin, or generated. With --tenant the user is
    scoped: its role applies in that tenant (and its --database's) alone, and the
    printed client settings connect there.

    Example: chromactl creds add alice --role writer --tenant acme --database prod
    """
    from chromactl import output
    from chromactl.commands.creds import add_user

    result = add_user(_root(ctx), user, role, _secret_source(password_stdin, token_stdin),
                      None if no_apply else _connect, output.ProgressReporter(as_json),
                      {"bcrypt_rounds": bcrypt_rounds}, tenant=tenant, databases=tuple(database or ()),
                      engine_address=_engine_address() if tenant else None)
    output.secret_result(result, as_json)
    _finish(result.effect)


@creds_app.command("rotate")
def creds_rotate(
    ctx: typer.Context,
    user: Annotated[str, typer.Argument(help="User name.", autocompletion=_complete_users)],
    password_stdin: PasswordStdin = False,
    token_stdin: TokenStdin = False,
    bcrypt_rounds: RoundsOption = None,
    no_apply: NoApply = False,
    as_json: JsonOption = False,
) -> None:
    """Give a user a new password or token; the old one stops working at once.

    Exits non-zero (3: no engine) when a running server could not be told: the old one
    still works there until `chromactl up`.

    Example: chromactl creds rotate alice
    """
    from chromactl import output
    from chromactl.commands.creds import rotate_user

    result = rotate_user(_root(ctx), user, _secret_source(password_stdin, token_stdin),
                         None if no_apply else _connect, output.ProgressReporter(as_json),
                         {"bcrypt_rounds": bcrypt_rounds})
    output.secret_result(result, as_json)
    _finish(result.effect)


@creds_app.command("rm")
def creds_rm(
    ctx: typer.Context,
    user: Annotated[str, typer.Argument(help="User name.", autocompletion=_complete_users)],
    force: Annotated[bool, typer.Option("--force", help="Remove even the last admin.")] = False,
    no_apply: NoApply = False,
    as_json: JsonOption = False,
) -> None:
    """Remove a user, at once.

    Exits non-zero (3: no engine) when a running server could not be told: the user's
    secret still works there until `chromactl up`.

    Example: chromactl creds rm alice
    """
    from chromactl import output
    from chromactl.commands.creds import remove_user

    result = remove_user(_root(ctx), user, None if no_apply else _connect, output.ProgressReporter(as_json),
                         force=force)
    output.remove_result(result, as_json)
    _finish(result.effect)


@creds_app.command("list")
def creds_list(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """List users, their roles and how many tokens each has; never a secret.

    Example: chromactl creds list --json
    """
    from chromactl import output
    from chromactl.commands.creds import list_users

    output.list_result(list_users(_root(ctx)), as_json)


# --- tenant -----------------------------------------------------------------------------

AdminUserOption = Annotated[Optional[str], typer.Option(
    "--user", metavar="USER", help="Basic auth, with --password-stdin: the admin to act as. [default: admin]",
    autocompletion=_complete_users)]
AdminPasswordStdin = Annotated[bool, typer.Option(
    "--password-stdin", help="Basic auth: read the admin's password from stdin (else CHROMA_CLIENT_AUTH_CREDENTIALS="
                             "USER:PASSWORD).")]


def _admin_password(password_stdin: bool):
    return (lambda: _read_stdin_secret("--password-stdin")) if password_stdin else (lambda: None)


@tenant_app.command("add")
def tenant_add(
    ctx: typer.Context,
    tenant: Annotated[str, typer.Argument(help="Tenant name.")],
    database: Annotated[Optional[list[str]], typer.Option(
        "--database", metavar="DATABASE", help=f"A database to create in it; repeatable. [default: {DEFAULT_DATABASE}]")]
    = None,
    user: AdminUserOption = None,
    password_stdin: AdminPasswordStdin = False,
    as_json: JsonOption = False,
) -> None:
    """Create a tenant and its databases on the running server; what exists is reported.

    Asked through Chroma's HTTP API as one of the project's admins: under token auth
    with an admin's token from authz.yaml, under basic auth with the password given.
    Without --database it creates default_database, where Chroma's clients start.
    Users are scoped to it with `chromactl creds add USER --tenant TENANT`.

    Example: chromactl tenant add acme --database prod --database staging
    """
    import os

    from chromactl import output
    from chromactl.clients import CREDENTIALS_VARIABLE
    from chromactl.commands.tenant import add_tenant
    from chromactl.engine import engine_address

    result = add_tenant(_root(ctx), tenant, tuple(database or ()), password=_admin_password(password_stdin),
                        user=user, from_environment=os.environ.get(CREDENTIALS_VARIABLE),
                        engine_address=engine_address()[0])  # read, never asked
    output.tenant_add_result(result, as_json)


@tenant_app.command("list")
def tenant_list(
    ctx: typer.Context,
    user: AdminUserOption = None,
    password_stdin: AdminPasswordStdin = False,
    as_json: JsonOption = False,
) -> None:
    """List the project's tenants with the databases the server holds for each.

    Chroma lists no tenants, so these are the ones the project knows: default_tenant,
    those of scoped users and those `tenant add` made; each is asked of the server.

    Example: chromactl tenant list --json
    """
    import os

    from chromactl import output
    from chromactl.clients import CREDENTIALS_VARIABLE
    from chromactl.commands.tenant import list_tenants
    from chromactl.engine import engine_address

    result = list_tenants(_root(ctx), password=_admin_password(password_stdin), user=user,
                          from_environment=os.environ.get(CREDENTIALS_VARIABLE),
                          engine_address=engine_address()[0])  # read, never asked
    output.tenant_list_result(result, as_json)


# --- the container lifecycle -------------------------------------------------------------


@app.command()
def up(
    ctx: typer.Context,
    pull: Annotated[PullPolicy, typer.Option(envvar="CHROMACTL_PULL", help="When to pull the image.")] = PullPolicy.missing,
    build: Annotated[Optional[str], typer.Option(
        metavar="CONTEXT", help="Build the image from a folder with a Dockerfile (or a git URL) instead of pulling.")] = None,
    timeout: Annotated[float, typer.Option(min=1, help="Seconds to wait for the server to answer.")] = 60,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the equivalent docker run command; change nothing.")] = False,
    start_empty: Annotated[bool, typer.Option(
        "--start-empty", help="When the data volume that held this project's data is gone, start on a new, empty "
                              "one (instead of refusing; a backup restores the data).")] = False,
    as_json: JsonOption = False,
    name: _hidden(NameOption) = None,
    auth: _hidden(AuthOption) = None,
    rbac: _hidden(RbacOption) = None,
    token_header: _hidden(TokenHeaderOption) = None,
    image: _hidden(ImageOption) = None,
    port: _hidden(PortOption) = None,
    host: _hidden(HostOption) = None,
    gateway: _hidden(GatewayOption) = None,
    gateway_image: _hidden(GatewayImageOption) = None,
    bcrypt_rounds: _hidden(RoundsOption) = None,
    tls: _hidden(TlsOption) = None,
) -> None:
    """Start the server and prove it: up, strangers refused, users accepted.

    The heartbeat answers, a request without credentials is refused and chromactl's probe
    credential is accepted.

    In a folder without a project, runs `chromactl init` first (printing the admin secret
    once; CHROMACTL_* variables choose its settings). Running it again changes nothing;
    after `creds` changes it recreates the container, keeping the data volume. Without a
    registry, build the image: --build DIR.

    Example: chromactl up --pull never
    """
    from chromactl import output
    from chromactl.commands.up import up as run_up

    reporter = output.ProgressReporter(as_json)
    given = _settings_given(name, auth, rbac, token_header, image, port, host, gateway, gateway_image, bcrypt_rounds,
                            tls)
    result = run_up(_root(ctx), _connect, reporter, pull=pull.value, build=build, timeout=timeout, dry_run=dry_run,
                    start_empty=start_empty, init_settings=given, on_init=reporter.initialised)
    output.up_result(result, as_json)


class StatusFormat(str, Enum):
    pretty = "pretty"
    table = "table"
    json = "json"
    env = "env"


@app.command()
def status(
    ctx: typer.Context,
    all_instances: Annotated[bool, typer.Option("--all", help="Every chromactl container on the engine.")] = False,
    output_format: Annotated[Optional[StatusFormat], typer.Option(
        "--output", "-o", help="pretty: a block per instance that fits the terminal; table: every column (as "
                               "--wide); json: as --json; env: KEY=VALUE lines to eval in a shell (one project). "
                               "[default: pretty]")] = None,
    wide: Annotated[bool, typer.Option("--wide", help="The full table, one row per instance (-o table).")] = False,
    as_json: JsonOption = False,
) -> None:
    """Show whether the instance is up, healthy and locked: probed, not assumed.

    State, health, heartbeat latency, version, URL, volume, whether auth is really
    enforced (probed), and whether the files changed since the container started: one
    block per instance that fits the terminal; the full table with --wide; `-o env` for
    a script: eval "$(chromactl status -o env)" sets CHROMA_URL, CHROMA_CA, ...
    Exits 4 when an instance is down or unhealthy.

    Example: chromactl status --all --json
    """
    from chromactl import output
    from chromactl.commands.status import status as run_status
    from chromactl.errors import EXIT_NOT_HEALTHY

    given = [(flag, fmt) for flag, fmt, on in (("--json", StatusFormat.json, as_json),
                                                ("--wide", StatusFormat.table, wide),
                                                (f"-o {output_format.value if output_format else ''}", output_format,
                                                 output_format is not None)) if on]
    if len({fmt for _, fmt in given}) > 1:
        raise UsageError(f"{' and '.join(flag for flag, _ in given)} choose different outputs: give one")
    fmt = given[0][1] if given else StatusFormat.pretty
    if fmt is StatusFormat.env and all_instances:
        raise UsageError("-o env prints one project's variables: drop --all (and name the project with --dir)")
    instances = run_status(None if all_instances else _root(ctx), _connect)
    output.status_result(instances, fmt.value)
    if any(not i.healthy for i in instances):
        raise typer.Exit(EXIT_NOT_HEALTHY)


# Chroma's actions, for doctor --action (system:reset is refused there: no request for it is harmless).
ActionChoice = Enum("ActionChoice", {action: action for action in ACTIONS}, type=str)


@app.command()
def doctor(
    ctx: typer.Context,
    url: Annotated[Optional[str], typer.Option(
        metavar="URL", help="The address a client uses, e.g. https://HOSTNAME:8000 as a remote client would. "
                            "[default: the project's URL, as `up` prints it]")] = None,
    ca: Annotated[Optional[Path], typer.Option(
        exists=True, dir_okay=False, metavar="PATH",
        help="The CA the client trusts. [default: the project's CA]")] = None,
    action: Annotated[ActionChoice, typer.Option(
        metavar="ACTION", help="The action to check the credential's role for (README: Roles), besides connecting.",
        case_sensitive=True)] = ActionChoice("db:list_collections"),
    token_stdin: Annotated[bool, typer.Option("--token-stdin", help="Check the token read from stdin.")] = False,
    password_stdin: Annotated[bool, typer.Option(
        "--password-stdin", help="Check the password read from stdin, of the user --user.")] = False,
    user: Annotated[Optional[str], typer.Option(metavar="USER", help="With --password-stdin: whose password.",
                                                autocompletion=_complete_users)] = None,
    as_json: JsonOption = False,
) -> None:
    """Tell apart what keeps a client out, each with its fix: from the client's side.

    One request of each kind, as a client makes them: the port, TLS (the CA, the name in
    the certificate), the heartbeat, a request without credentials (strangers must be
    refused), the credential, and the actions a client needs. The credential checked is
    CHROMA_CLIENT_AUTH_CREDENTIALS (as the snippets `up` prints read it), or one read with
    --token-stdin / --password-stdin, else chromactl's probe user. The project's files say
    whose secret it is and which role it has. Exits 4 when a check fails.

    Example: chromactl doctor --url https://$(hostname):8000 --action collection:add
    """
    import os

    from chromactl import output
    from chromactl.clients import CREDENTIALS_VARIABLE
    from chromactl.commands.doctor import doctor as run_doctor
    from chromactl.engine import engine_address
    from chromactl.errors import EXIT_NOT_HEALTHY

    if token_stdin and password_stdin:
        raise UsageError("--token-stdin and --password-stdin: give one")
    flag = "--token-stdin" if token_stdin else "--password-stdin" if password_stdin else None
    result = run_doctor(_root(ctx), url=url, ca=str(ca.absolute()) if ca else None,
                        from_environment=os.environ.get(CREDENTIALS_VARIABLE), stdin_flag=flag,
                        read_stdin=(lambda: _read_stdin_secret(flag)) if flag else None, user=user,
                        action=action.value, engine_address=engine_address()[0])  # read, never asked
    output.doctor_result(result, as_json)
    if not result.healthy:
        raise typer.Exit(EXIT_NOT_HEALTHY)


@app.command()
def down(
    ctx: typer.Context,
    volumes: Annotated[bool, typer.Option("--volumes", help="Also delete the project's volumes (asks first).")] = False,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask before deleting the data volume.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Stop and remove the containers; the data volumes only when asked and confirmed.

    The volumes are kept unless --volumes is given and confirmed once (on a terminal, or
    with --yes): then the data volume and every volume restore and upgrade left go.

    Example: chromactl down
    """
    from chromactl import output
    from chromactl.commands.down import down as run_down

    def confirm(volumes: str) -> bool:
        return _confirm(yes)(f"Delete {volumes} and all the data in them? (a backup first: chromactl backup)")

    output.down_result(run_down(_root(ctx), _connect, volumes=volumes, confirm=confirm), as_json)


@app.command()
def logs(
    ctx: typer.Context,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new lines.")] = False,
    tail: Annotated[Optional[int], typer.Option("--tail", "-n", min=0, help="Only the last N lines.")] = None,
    service: Annotated[str, typer.Option(help="chroma, or gateway when the project has one.",
                                         autocompletion=_complete_services)] = "chroma",
) -> None:
    """Print the server's logs, or the gateway's with --service gateway.

    Example: chromactl logs -n 50 -f
    """
    from chromactl.commands.logs import logs as run_logs

    try:
        for chunk in run_logs(_root(ctx), _connect, tail=tail, follow=follow, service=service):
            sys.stdout.buffer.write(chunk)
            sys.stdout.buffer.flush()
    except KeyboardInterrupt:
        pass  # the way out of --follow


@app.command()
def audit(
    ctx: typer.Context,
    since: Annotated[Optional[str], typer.Option(
        metavar="DURATION|TIMESTAMP", help="Only requests since then: 30s, 15m, 2h, 7d, or 2026-12-02T04:36:44Z "
                                           "(UTC without a zone).")] = None,
    user: Annotated[Optional[str], typer.Option(metavar="USER", help="Only this user's requests ('unknown': "
                                                "credentials the gateway does not know).",
                                                autocompletion=_complete_users)] = None,
    action: Annotated[Optional[str], typer.Option(metavar="ACTION", help="Only this action, e.g. collection:add, "
                                                  "system:heartbeat, unknown.")] = None,
    status: Annotated[Optional[str], typer.Option(metavar="CODE", help="Only this HTTP status (403) or class "
                                                  "(4xx).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Who did what through the gateway: one line per request, oldest first.

    Read from the running gateway's log and from the logs of earlier gateways, which `up`
    and `down` archive in .chromactl/audit/ before removing one. Lines that are not audit
    lines are skipped; damaged ones are counted. Projects without a gateway have no audit
    trail (Chroma records no requests).

    Example: chromactl audit --since 1h --status 4xx
    """
    from chromactl import output
    from chromactl.commands.audit import audit as run_audit

    output.audit_result(run_audit(_root(ctx), _connect, since=since, user=user, action=action, status=status),
                        as_json)


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
    """A Compose file for the same deployment.

    The image, the env file, the credential files mounted read-only, the data volume,
    the port, restart policy and a health check that needs only bash.

    Example: chromactl export compose | docker compose -f - config
    """
    from chromactl import output as out
    from chromactl.commands.export import export_compose as run

    result = run(_root(ctx), output, _connect)
    _emit(result.text, output)
    if result.volume_created:
        out.stderr().print(f"created the data volume {result.volume} (external: no `docker-compose down -v` "
                           "deletes it)", markup=False)
    elif not result.engine_reached:
        out.warn(f"no container engine answered: create the data volume before `docker-compose up`: "
                 f"docker volume create {result.volume}")


@export_app.command("kubernetes")
def export_kubernetes(
    ctx: typer.Context,
    output: OutputOption = None,
    namespace: Annotated[Optional[str], typer.Option(help="Namespace of every object.")] = None,
) -> None:
    """Kubernetes manifests for the same deployment.

    A Secret with the credential files and settings, a StatefulSet with a volume claim
    and heartbeat probes, and a Service.

    Example: chromactl export kubernetes --namespace search | kubectl apply -f -
    """
    import re

    from chromactl.commands.export import export_kubernetes as run

    if namespace is not None and not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", namespace):
        raise UsageError(f"--namespace: invalid namespace {namespace!r}: 1-63 lowercase letters, digits or '-', "
                         "starting and ending with a letter or digit (as Kubernetes requires)")
    _emit(run(_root(ctx), output, namespace), output)


# --- tls ------------------------------------------------------------------------------------


@tls_app.command("show")
def tls_show(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Show the CA clients trust (path, fingerprint to pin) and the certificate's names.

    The server certificate's names and expiry, too.

    Example: chromactl tls show
    """
    from chromactl import output
    from chromactl.commands.tls import show

    output.tls_result(show(_root(ctx)), as_json)


@tls_app.command("renew")
def tls_renew(
    ctx: typer.Context,
    new_ca: Annotated[bool, typer.Option(
        "--new-ca", help="Also a new CA, constrained to the names served today (clients must trust the new "
                         "ca.pem): for names the old CA may not sign for.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Issue a new server certificate from the project's CA and put it in service.

    The gateway reloads; Chroma serving TLS itself (0.x) is recreated, which the output
    says.

    Example: chromactl tls renew
    """
    from chromactl import output
    from chromactl.commands.tls import renew

    output.tls_result(renew(_root(ctx), _connect, output.ProgressReporter(as_json), new_ca=new_ca), as_json,
                      renewed=True)


# --- data: backup, restore, upgrade ------------------------------------------------------

TimeoutOption = Annotated[float, typer.Option(min=1, help="Seconds to wait for the server to answer after a start.")]


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
    """Write a consistent backup of the data (Chroma is stopped for the copy).

    Stops Chroma, streams its volume into an archive with a manifest (image, data
    fingerprint, collections and counts, sha256), starts it again and proves it answers.
    Clients get errors meanwhile (about a second per 50 MB). No credentials are stored
    unless --include-credentials.

    Example: chromactl backup -o /srv/backups/search.tar
    """
    from chromactl import output_data
    from chromactl.commands.backup import backup as run_backup

    result = run_backup(_root(ctx), output, _connect, output_data.DataReporter(as_json),
                        include_credentials=include_credentials, timeout=timeout)
    output_data.backup_result(result, as_json)


@app.command()
def restore(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="A file written by `chromactl backup`.", dir_okay=False, exists=True)],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask before replacing the data.")] = False,
    timeout: TimeoutOption = 60,
    as_json: JsonOption = False,
) -> None:
    """Restore a backup into a new volume, proven before it is kept.

    Checks its sha256 and that this project's image reads its data, fills a new volume,
    starts the server on it, compares the counts with the manifest, and only then keeps
    it. The previous volume is kept until you remove it.

    Example: chromactl restore backups/search-20261130T010000Z.chromactl-backup.tar --yes
    """
    from chromactl import output_data
    from chromactl.commands.restore import restore as run_restore

    result = run_restore(_root(ctx), file.absolute(), _connect, output_data.DataReporter(as_json),
                         confirm=_confirm(yes), timeout=timeout)
    output_data.restore_result(result, as_json)


@app.command()
def upgrade(
    ctx: typer.Context,
    image: Annotated[Optional[str], typer.Option(help="The Chroma 1.x image to upgrade to, e.g. chromadb/chroma:1.5.9.",
                                                 autocompletion=_complete_images)] = None,
    rollback: Annotated[bool, typer.Option("--rollback", help="Go back to the image and volume from before the last upgrade.")] = False,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask first.")] = False,
    timeout: TimeoutOption = 60,
    as_json: JsonOption = False,
) -> None:
    """Upgrade Chroma 0.5/0.6 to 1.x (or to a later 1.x), proven record for record.

    A backup first, a copy of the data in a new volume, the gateway for the same users,
    tokens and roles, then proof: counts and sample queries equal before and after, the
    data's fingerprint, no ERROR in the log. On any mismatch nothing is switched and the
    old server runs again. --rollback goes back.

    Example: chromactl upgrade --image chromadb/chroma:1.5.9
    """
    from chromactl import output_data
    from chromactl.commands import upgrade as upgrading

    reporter = output_data.DataReporter(as_json)
    if rollback:
        if image:
            raise UsageError("--rollback takes no --image: it goes back to the image from before the upgrade")
        output_data.rollback_result(upgrading.rollback(_root(ctx), _connect, reporter, confirm=_confirm(yes),
                                                       timeout=timeout), as_json)
        return
    if not image:
        raise UsageError("name the image to upgrade to: --image IMAGE (or --rollback)")
    result = upgrading.upgrade(_root(ctx), image, _connect, reporter, confirm=_confirm(yes), timeout=timeout)
    output_data.upgrade_result(result, as_json)


# --- the way out: one line, one exit code --------------------------------------------------


def _command_name(argv: list[str]) -> str:
    """The command path named on the command line (for JSON errors), e.g. "creds add"."""
    words, path, skip = [], [], False
    for word in argv:
        if skip:
            skip = False
        elif word in ("--dir", "-C"):  # the root's one option with a value: the folder, not a command
            skip = True
        elif not word.startswith("-"):
            words.append(word)
    groups = {"creds", "export", "tls", "tenant"}
    for word in words[:2]:
        path.append(word)
        if word not in groups:
            break
    if path[:1] == ["upgrade"] and "--rollback" in argv:
        return "upgrade --rollback"
    return " ".join(path) or "chromactl"


def _json_requested(argv: list[str]) -> bool:
    """Whether the run asked for JSON (errors are then a document too): --json, or
    `status -o json` (elsewhere -o names a file)."""
    args = argv[: argv.index("--")] if "--" in argv else argv
    if "--json" in args:
        return True
    if _command_name(argv) != "status":
        return False
    pairs = zip(args, args[1:] + [""])
    return any((a in ("-o", "--output") and b == "json") or a in ("-ojson", "-o=json", "--output=json")
               for a, b in pairs)


def _engine_hint(exc: ChromactlError) -> ChromactlError:
    """The engine's errors say what failed; the hint says what to do about it."""
    from chromactl.engine_api import EngineUnavailable, LimitsRefused, PortInUse

    if isinstance(exc, EngineUnavailable) and exc.hint is None:
        exc.hint = ("start the engine (`sudo systemctl start docker`, or `sudo dockerd &`; on Debian "
                    "`apt-get install docker.io`), or point DOCKER_HOST at one")
    elif isinstance(exc, LimitsRefused) and exc.hint is None:
        exc.hint = ("Podman: set default_ulimits in containers.conf to what the host allows (`ulimit -Hn`, "
                    "`ulimit -Hu`), e.g. [containers] default_ulimits = [\"nofile=20000:20000\"], then restart "
                    "its service")
    elif isinstance(exc, PortInUse) and exc.hint is None:
        exc.hint = ("free it (see `ss -ltnp`), or pick another with `chromactl init --force --port N`")
    return exc


_signalled: list[int] = []


def _terminate(signum, frame) -> None:
    """SIGTERM, raised as an interrupt where the program is, so that every `finally` and
    `with` on the way out runs (a backup starts Chroma again) as it does for Ctrl-C."""
    _signalled.append(signum)
    raise KeyboardInterrupt()


def _interrupted(argv: list[str], as_json: bool) -> None:
    import signal

    from chromactl import output

    terminated = signal.SIGTERM in _signalled
    output.error(Cancelled("terminated" if terminated else "interrupted"), _command_name(argv), as_json)
    sys.exit(128 + signal.SIGTERM if terminated else EXIT_INTERRUPTED)


def main() -> None:
    import signal

    argv = sys.argv[1:]
    as_json = _json_requested(argv)
    from chromactl import output

    signal.signal(signal.SIGTERM, _terminate)
    try:
        code = app(prog_name="chromactl", standalone_mode=False)  # the same name under `python -m chromactl`
    except ChromactlError as exc:
        output.error(_engine_hint(exc), _command_name(argv), as_json)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        _interrupted(argv, as_json)
    except typer.Abort:
        output.error(Cancelled("cancelled"), _command_name(argv), as_json)
        sys.exit(1)
    except Exception as exc:
        if not (callable(getattr(exc, "format_message", None)) and isinstance(getattr(exc, "exit_code", None), int)):
            raise  # a bug: keep its traceback
        # The command-line parser's own errors (an unknown option, a bad value): usage, exit 2.
        if as_json:
            output.error(UsageError(exc.format_message()), _command_name(argv), True)
        else:
            exc.show()
        sys.exit(exc.exit_code)
    if code == EXIT_INTERRUPTED:  # the parser turns Ctrl-C into this exit code, silently
        _interrupted(argv, as_json)
    sys.exit(code if isinstance(code, int) else 0)
