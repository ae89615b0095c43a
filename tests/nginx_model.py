"""A small model of nginx, enough to decide requests with the gateway's rendered nginx.conf
without running nginx: the fast suite checks the text chromactl writes, not a re-derivation.

It reads the configuration the way nginx does (tokens, quoting and backslash escapes of
ngx_conf_file.c), and decides a request the way the gateway's server does:
  - the server-level `if ($request_uri ~ ...)` check (400);
  - `location = ...` before `location /`, `limit_except` (403);
  - `auth_basic` against the user file's bcrypt and {SSHA} hashes (401);
  - `map` blocks as ngx_http_map_find evaluates them: exact strings first, ignoring case;
    then regular expressions (`~` case-sensitive, `~*` not) in the order written, the first
    match wins, never for an empty source; else the default (the empty string if none);
  - `proxy_pass http://$variable` to a named upstream, followed to the server block that
    listens on its socket (the refusal's `return 403`, the identity's `return 200 $header`,
    with the headers `proxy_set_header` sends it) or to Chroma;
  - `auth_request` to an internal location (its `if ($x = "")`, or a proxy_pass to Chroma
    answered by a stand-in for Chroma's by-id lookup: `chroma_ids`), `error_page` to named
    locations, as nginx's access and content phases run them;
  - the access log line (`log_format ... escape=json`) of each decision: `audit()`.

PCRE patterns are run with Python's `re` after translating the escapes whose meaning
differs (`\\z`, `\\Z`, `\\A`); a construct outside what chromactl writes is refused, so the
model cannot silently disagree with nginx. tests/test_gateway_config.py checks the model
against a real nginx where one is installed."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import urllib.parse
from dataclasses import dataclass, field

import bcrypt

CHROMA = "chroma"  # the decision for a request that is proxied to Chroma


class ConfError(ValueError):
    """Text that nginx would refuse to load, or that this model does not know."""


@dataclass
class Directive:
    name: str
    args: list[str]
    block: list["Directive"] | None = None
    quoted: list[bool] = field(default_factory=list)

    def children(self, name: str) -> list["Directive"]:
        return [d for d in self.block or [] if d.name == name]

    def child(self, name: str) -> "Directive":
        found = self.children(name)
        if len(found) != 1:
            raise ConfError(f"expected one {name!r} in {self.name}, found {len(found)}")
        return found[0]


def _unescape(raw: str) -> str:
    """nginx's handling of a backslash in a token: \\" \\' \\\\ drop the backslash, \\t \\r \\n
    become the control character, any other keeps it (so PCRE's \\x41 reaches PCRE)."""
    out, i = [], 0
    while i < len(raw):
        c = raw[i]
        if c == "\\" and i + 1 < len(raw):
            nxt = raw[i + 1]
            if nxt in "\"'\\":
                out.append(nxt)
                i += 2
                continue
            if nxt in "trn":
                out.append({"t": "\t", "r": "\r", "n": "\n"}[nxt])
                i += 2
                continue
        out.append(c)
        i += 1
    return "".join(out)


def tokenize(text: str) -> list[tuple[str, bool]]:
    """(token, was quoted) pairs; `;`, `{` and `}` are tokens of their own."""
    tokens: list[tuple[str, bool]] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
        elif c == "#":
            while i < n and text[i] != "\n":
                i += 1
        elif c in ";{}":
            tokens.append((c, False))
            i += 1
        elif c in "\"'":
            j = i + 1
            while j < n and text[j] != c:
                j += 2 if text[j] == "\\" else 1
            if j >= n:
                raise ConfError("unbalanced quotes")
            tokens.append((_unescape(text[i + 1:j]), True))
            i = j + 1
            if i < n and not (text[i].isspace() or text[i] in ";{})"):
                raise ConfError(f"unexpected {text[i]!r} after a quoted string")
        else:
            j = i
            while j < n and not (text[j].isspace() or text[j] in ";{}\"'"):
                j += 2 if text[j] == "\\" else 1
            tokens.append((_unescape(text[i:j]), False))
            i = j
    return tokens


def parse(text: str) -> list[Directive]:
    tokens = tokenize(text)
    position = 0

    def block(nested: bool) -> list[Directive]:
        nonlocal position
        directives: list[Directive] = []
        words: list[tuple[str, bool]] = []
        while position < len(tokens):
            token, quoted = tokens[position]
            position += 1
            if not quoted and token == ";":
                if not words:
                    raise ConfError("an empty directive")
                directives.append(Directive(words[0][0], [w for w, _ in words[1:]], None, [q for _, q in words[1:]]))
                words = []
            elif not quoted and token == "{":
                if not words:
                    raise ConfError("a block without a name")
                directives.append(Directive(words[0][0], [w for w, _ in words[1:]], block(True),
                                            [q for _, q in words[1:]]))
                words = []
            elif not quoted and token == "}":
                if not nested or words:
                    raise ConfError("unexpected '}'")
                return directives
            else:
                words.append((token, quoted))
        if nested or words:
            raise ConfError("unexpected end of file")
        return directives

    return block(False)


def pcre(pattern: str, caseless: bool = False) -> re.Pattern:
    """A PCRE pattern of the kinds chromactl writes, compiled with Python's re."""
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            if i + 1 >= len(pattern):
                raise ConfError(f"a trailing backslash in {pattern!r}")
            nxt = pattern[i + 1]
            if nxt == "x":
                digits = pattern[i + 2:i + 4]
                if not re.fullmatch(r"[0-9a-fA-F]{2}", digits):
                    raise ConfError(f"a \\x escape without two hex digits in {pattern!r}")
                out.append("\\x" + digits)
                i += 4
                continue
            if nxt == "z":
                out.append(r"\Z")  # PCRE's \z: the very end (Python's \Z)
            elif nxt == "Z":
                out.append(r"(?=\n?\Z)")  # PCRE's \Z: the end, or before a final newline
            elif nxt == "A":
                out.append(r"\A")
            elif nxt.isalnum():
                raise ConfError(f"an escape this model does not know: \\{nxt} in {pattern!r}")
            else:
                out.append("\\" + nxt)  # an escaped punctuation character is itself
            i += 2
            continue
        if c == "(" and pattern[i + 1:i + 2] == "?" and pattern[i + 2:i + 3] != ":":
            raise ConfError(f"a PCRE group this model does not know in {pattern!r}")
        out.append(c)
        i += 1
    return re.compile("".join(out), re.IGNORECASE if caseless else 0)


@dataclass
class MapBlock:
    source: str
    default: str
    exact: dict[str, str]  # keys lower-cased, as nginx hashes them
    regexes: list[tuple[re.Pattern, str]]


def _map_block(directive: Directive) -> MapBlock:
    if len(directive.args) != 2 or directive.block is None:
        raise ConfError("map needs a source and a variable")
    default, exact, regexes = None, {}, []
    for entry in directive.block:
        if entry.block is not None or len(entry.args) != 1:
            raise ConfError(f"invalid number of map parameters: {entry.name} {entry.args}")
        key, value = entry.name, entry.args[0]
        if key in ("hostnames", "volatile", "include"):
            raise ConfError(f"map {key} is not used by chromactl")
        if key == "default":
            if default is not None:
                raise ConfError("duplicate default map parameter")
            default = value
        elif key.startswith("~"):
            caseless = key.startswith("~*")
            regexes.append((pcre(key[2:] if caseless else key[1:], caseless), value))
        else:
            key = key[1:] if key.startswith("\\") else key
            if key.lower() in exact:
                raise ConfError(f"conflicting parameter {key!r}")
            exact[key.lower()] = value
    return MapBlock(directive.args[0], "" if default is None else default, exact, regexes)


@dataclass
class Request:
    method: str
    target: str  # the raw request target, as sent: path and query
    headers: dict[str, str] = field(default_factory=dict)  # names in any case
    remote_addr: str = "192.0.2.7"
    status: int | None = None  # the answer's status, once decided (for the log's $status)
    captures: tuple[str | None, ...] = ()  # of the last regex that matched ($1, $2, ...)
    values: dict[str, str] = field(default_factory=dict)  # variables evaluated (maps are cached per request)


@dataclass
class Answer:
    status: str | int  # CHROMA, or what nginx answers itself
    headers: dict[str, str] = field(default_factory=dict)  # add_header's
    body: str | None = None  # of a `return`


@dataclass
class Gateway:
    """The gateway's files (name -> content, as render_gateway returns them) read as nginx
    would read them from `mount_dir`."""
    files: dict[str, str]
    mount_dir: str
    config_file: str = "nginx.conf"
    # What Chroma's by-id route answers: "tenant/database" -> the collection ids in it.
    chroma_ids: dict[str, set[str]] = field(default_factory=dict)
    chroma_status: int = 200  # what Chroma answers a request proxied to it (for the log's $status)

    def __post_init__(self) -> None:
        top = parse(self.files[self.config_file])
        self.http = next(d for d in top if d.name == "http")
        self.maps: dict[str, MapBlock] = {}
        for directive in self.http.children("map"):
            variable = directive.args[1]
            if not variable.startswith("$") or variable in self.maps:
                raise ConfError(f"map variable {variable!r} is invalid or defined twice")
            self.maps[variable] = _map_block(directive)
        self.upstreams = {d.args[0]: d for d in self.http.children("upstream")}
        servers = self.http.children("server")
        # The gateway's own servers (where refusals get their 403): on a socket or its loopback.
        self.unix_servers = {d.child("listen").args[0]: d for d in servers
                             if d.child("listen").args[0].startswith(("unix:", "127.0.0.1:"))}
        public = [d for d in servers if d.child("listen").args[0] not in self.unix_servers]
        if len(public) != 1:
            raise ConfError(f"expected one server on a port, found {len(public)}")
        self.server = public[0]

    # --- variables -------------------------------------------------------------------------

    def variable(self, name: str, request: Request) -> str:
        if name[1:].isdigit():  # a capture of the last regex that matched
            index = int(name[1:]) - 1
            return (request.captures[index] or "") if index < len(request.captures) else ""
        if name in self.maps:
            if name in request.values:
                return request.values[name]
            block = self.maps[name]
            source = self.expand(block.source, request)
            value = block.default
            if source.lower() in block.exact:
                value = block.exact[source.lower()]
            elif source:  # nginx tries no regex on an empty value
                for regex, candidate in block.regexes:
                    match = regex.search(source)
                    if match:
                        request.captures, value = match.groups(), candidate
                        break
            request.values[name] = self.expand(value, request)
            return request.values[name]
        if name.startswith("$http_"):
            wanted = name[len("$http_"):]
            found = [v for k, v in request.headers.items() if k.lower().replace("-", "_") == wanted]
            return found[0].strip(" \t") if found else ""  # nginx drops the spaces around a value
        if name == "$request_method":
            return request.method
        if name == "$request_uri":
            return request.target
        if name == "$uri":  # decoded; the paths that decoding could change are refused before (400)
            # ... but still logged: with slashes merged, as nginx's merge_slashes (on by default) does.
            return re.sub("/{2,}", "/", urllib.parse.unquote(request.target.split("?", 1)[0]))
        if name == "$remote_user":
            return (self._basic_credentials(request) or ("", ""))[0]
        if name in ("$binary_remote_addr", "$remote_addr"):
            return request.remote_addr
        if name == "$status":
            if request.status is None:
                raise ConfError("$status before the request was decided")
            return str(request.status)
        if name == "$host":
            return next((v for k, v in request.headers.items() if k.lower() == "host"), "")
        raise ConfError(f"a variable this model does not know: {name}")

    def expand(self, text: str, request: Request) -> str:
        return re.sub(r"\$(\{\w+\}|\w+)", lambda m: self.variable("$" + m[1].strip("{}"), request), text)

    @staticmethod
    def _basic_credentials(request: Request) -> tuple[str, str] | None:
        value = next((v for k, v in request.headers.items() if k.lower() == "authorization"), "").strip(" \t")
        scheme, _, encoded = value.partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            user, sep, password = base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
        return (user, password) if sep else None

    # --- the decision --------------------------------------------------------------------

    def decide(self, request: Request) -> str | int:
        """CHROMA when the request is proxied to Chroma, else the status nginx answers."""
        return self.answer(request)[0]

    def answer(self, request: Request) -> tuple[str | int, dict[str, str]]:
        """What decide() says, with the headers nginx adds to its own answer (add_header)."""
        found = self.respond(request)
        return found.status, found.headers

    def respond(self, request: Request) -> Answer:
        """The whole answer: what answer() says, and the body of a `return`."""
        found = self._respond(request)
        request.status = self.chroma_status if found.status == CHROMA else found.status  # for the log
        return found

    def _respond(self, request: Request) -> Answer:
        for directive in self.server.block or []:
            if directive.name == "if":
                returned = self._if(directive, request)
                if returned is not None:
                    return returned
        location = self._location_for(self.variable("$uri", request))
        if location is None:
            return Answer(404)
        if location.children("internal"):  # not for a client: 404, which the location's error_page may turn
            return self._error_page(location, 404, request)
        return self._location(location, request)

    def _location_for(self, path: str) -> Directive | None:
        locations = self.server.children("location")
        exact = [d for d in locations if d.args[0] == "=" and d.args[1] == path]
        prefix = sorted((d for d in locations if len(d.args) == 1 and path.startswith(d.args[0])),
                        key=lambda d: len(d.args[0]), reverse=True)
        return (exact or prefix or [None])[0]

    def _named(self, name: str) -> Directive:
        found = [d for d in self.server.children("location") if d.args == [name]]
        if len(found) != 1:
            raise ConfError(f"no named location {name}")
        return found[0]

    def _if(self, directive: Directive, request: Request) -> Answer | None:
        """`if ($var ~ "regex")` or `if ($var = "")`, then its `return`."""
        args, quoted = list(directive.args), list(directive.quoted)
        if args and args[-1] == ")":
            args, quoted = args[:-1], quoted[:-1]
        elif args and args[-1].endswith(")") and not quoted[-1]:
            args[-1] = args[-1][:-1]
        if not args or not args[0].startswith("("):
            raise ConfError(f"an if this model does not know: {directive.args}")
        args[0] = args[0][1:]
        if len(args) != 3 or args[1] not in ("~", "~*", "="):
            raise ConfError(f"an if this model does not know: {directive.args}")
        value = self.expand(args[0], request)
        holds = value == args[2] if args[1] == "=" else bool(pcre(args[2], args[1] == "~*").search(value))
        if not holds:
            return None
        return self._return(directive, directive.child("return"), request)

    def _return(self, where: Directive, returned: Directive, request: Request) -> Answer:
        status = int(returned.args[0])
        body = self.expand(returned.args[1], request) if len(returned.args) > 1 else None
        return Answer(status, self._added_headers(where, status, request), body)

    def _location(self, location: Directive, request: Request, upstream_headers: dict[str, str] | None = None,
                  subrequest: bool = False) -> Answer:
        """The phases of a location: rewrite (`if`), access (limit_except, auth_basic, then
        auth_request), content (`return`, or proxy_pass); error_page on nginx's own 403."""
        for directive in location.block or []:
            if directive.name == "if":
                returned = self._if(directive, request)
                if returned is not None:
                    return returned
        for directive in location.block or []:
            if directive.name == "limit_except":
                allowed = set(directive.args) | ({"HEAD"} if "GET" in directive.args else set())
                if request.method not in allowed and directive.children("deny"):
                    return Answer(403)
        auth = location.children("auth_basic")
        if auth and auth[0].args[0] != "off":
            if not self._password_ok(location, request):
                return Answer(401)
        for directive in location.children("auth_request"):
            status = self._subrequest(directive.args[0], request)
            if status not in range(200, 300):
                status = status if status in (401, 403) else 500
                return self._error_page(location, status, request)
        returned = location.children("return")
        if returned:
            return self._return(location, returned[0], request)
        target = location.child("proxy_pass").args[0]
        if not target.startswith("http://"):
            raise ConfError(f"proxy_pass this model does not know: {target}")
        destination = self.expand(target[len("http://"):], request)
        upstream_name, _, path = destination.partition("/")
        upstream = self.upstreams.get(upstream_name)
        if upstream is None:
            return Answer(502)  # nginx would try to resolve the name, and fail
        address = upstream.child("server").args[0]
        if address in self.unix_servers:
            server = self.unix_servers[address]
            inner = Request(request.method, request.target, self._proxied_headers(location, request))
            return self._location(server.child("location"), inner)
        if subrequest:
            return self._error_page(location, self._chroma_lookup("/" + path), request)
        return Answer(CHROMA)

    def _proxied_headers(self, location: Directive, request: Request) -> dict[str, str]:
        """The headers an upstream gets: the client's, less those proxy_set_header names,
        plus those it sets to a non-empty value."""
        set_here = {d.args[0].lower(): self.expand(d.args[1], request) for d in location.children("proxy_set_header")}
        headers = {k: v for k, v in request.headers.items() if k.lower() not in set_here}
        headers.update({k: v for k, v in set_here.items() if v})
        return headers

    def _subrequest(self, uri: str, request: Request) -> int:
        """An auth_request: the internal location's status (its headers and body are dropped)."""
        location = self._location_for(uri)
        if location is None or location.args[:2] != ["=", uri]:
            raise ConfError(f"auth_request {uri} has no exact location")
        found = self._location(location, request, subrequest=True)
        if found.status == CHROMA:
            raise ConfError("a subrequest this model cannot answer")
        return int(found.status)

    def _chroma_lookup(self, path: str) -> int:
        """Chroma's by-id route: 200 when the id is in the path's tenant and database."""
        match = re.fullmatch(r"/api/v2/tenants/([^/]+)/databases/([^/]+)/collections/by-id/([^/?]+)", path)
        if match is None:
            raise ConfError(f"a lookup this model does not know: {path}")
        return 200 if match[3] in self.chroma_ids.get(f"{match[1]}/{match[2]}", set()) else 404

    def _error_page(self, location: Directive, status: int, request: Request) -> Answer:
        """`error_page CODE = @named`: the named location answers; otherwise the status."""
        for directive in location.children("error_page"):
            codes, target = directive.args[:-2], directive.args[-2:]
            if str(status) in codes:
                if target[0] != "=" or not target[1].startswith("@"):
                    raise ConfError(f"an error_page this model does not know: {directive.args}")
                return self._location(self._named(target[1]), request)
        return Answer(status)

    def audit(self, request: Request) -> dict:
        """The access log line nginx writes for the request (decided first, if it was not), as
        the JSON object it is: log_format's text, each variable escaped as escape=json does."""
        if request.status is None:
            self.respond(request)
        log_format = next(d for d in self.http.children("log_format") if d.args[0] == "chromactl_audit")
        if log_format.args[1] != "escape=json":
            raise ConfError("the audit log is not escaped for JSON")
        times = {"$time_iso8601": "2026-01-01T00:00:00+00:00", "$msec": "1767225600.000", "$request_time": "0.000",
                 "$request_length": "0", "$bytes_sent": "0", "$request_method": request.method}

        def value(match: re.Match) -> str:
            name = "$" + match[1].strip("{}")
            text = times[name] if name in times else self.variable(name, request)
            return json.dumps(text)[1:-1]

        return json.loads(re.sub(r"\$(\{\w+\}|\w+)", value, "".join(log_format.args[2:])))

    def _added_headers(self, location: Directive, status: int, request: Request) -> dict[str, str]:
        """add_header: on success and redirect statuses only, unless `always`."""
        added = {}
        for directive in location.children("add_header"):
            name, value, *rest = directive.args
            if rest not in ([], ["always"]):
                raise ConfError(f"an add_header this model does not know: {directive.args}")
            if rest or status in (200, 201, 204, 206, 301, 302, 303, 304, 307, 308):
                added[name] = self.expand(value, request)
        return added

    def _password_ok(self, location: Directive, request: Request) -> bool:
        path = location.child("auth_basic_user_file").args[0]
        prefix = self.mount_dir + "/"
        if not path.startswith(prefix):
            raise ConfError(f"the user file {path} is not in the gateway's folder")
        credentials = self._basic_credentials(request)
        if credentials is None:
            return False
        user, password = credentials
        for line in self.files[path[len(prefix):]].splitlines():
            name, sep, hashed = line.partition(":")
            if sep and name == user:
                return check_password(password, hashed)
        return False


def check_password(password: str, hashed: str) -> bool:
    """What nginx's auth_basic accepts: crypt's bcrypt ($2y$, $2b$) or {SSHA}."""
    if hashed.startswith("{SSHA}"):
        raw = base64.b64decode(hashed[len("{SSHA}"):])
        digest, salt = raw[:20], raw[20:]
        return hashlib.sha1(password.encode() + salt).digest() == digest
    if hashed.startswith(("$2y$", "$2b$", "$2a$")):
        return bcrypt.checkpw(password.encode(), hashed.encode())
    raise ConfError(f"a password scheme this model does not know: {hashed[:8]}")
