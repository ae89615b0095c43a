"""A stand-in container engine and HTTP prober for the fast suite: chromactl.engine_api's
interface kept in memory, so that the decisions of up, creds, status, restore and upgrade
can be checked without Docker. What only a real engine can show (namespaces, ports,
restart policies, real servers) is tested against the real engine in the Docker suite.

The model is small and explicit: images, containers (state, labels, restart count, start
order), volumes holding files (path -> bytes), networks; and a server per running Chroma
container whose behaviour a test sets (answers, enforces auth, exits at start...)."""

from __future__ import annotations

import hashlib
import io
import itertools
import tarfile
from dataclasses import dataclass, field

from chromactl.engine_api import (
    Conflict,
    ContainerInfo,
    EngineError,
    EngineUnavailable,
    ImageInfo,
    NetworkInfo,
    PortInUse,
)
from chromactl.probe import AuthProbe, Heartbeat
from chromactl.spec import LABEL_SERVICE

_clock = itertools.count(1)


def _stamp() -> str:
    """A strictly increasing RFC 3339 time: start order is what deploy compares."""
    return f"2026-12-01T00:{next(_clock) % 60:02d}:{next(_clock) % 60:02d}.{next(_clock):06d}Z"


@dataclass
class FakeContainer:
    id: str
    spec: object  # a ContainerSpec, or None for a holder
    image: str
    labels: dict
    state: str = "created"
    started_at: str = ""
    restart_count: int = 0
    volume: str | None = None
    path: str | None = None  # a holder's mount point
    exit_code: int = 0
    stdout: bytearray = field(default_factory=bytearray)  # what it wrote there (the gateway: its audit lines)


@dataclass
class ServerModel:
    """How the Chroma behind a container behaves, for the prober."""

    answers: bool = True  # the heartbeat answers once it runs
    silent_on: set = field(default_factory=set)  # volumes on which it never answers (data it cannot open)
    enforces_auth: bool = True  # a request without credentials is refused
    accepts_probe: bool = True
    enforces_rbac: bool = True  # a write beyond the probe user's role is refused
    exits_at_start: bool = False  # the container exits while starting (exit code 1)
    writes_elsewhere: bool = False  # Chroma keeps its database outside the mounted volume
    stray_on_internal: str | None = None  # another container that someone attached to the internal network
    api_version: str = "1.0.0"
    mute_auth_checks: int = 0  # auth checks that get no answer at all (a reload in progress), before it answers


@dataclass
class FakeEngine:
    images: dict[str, ImageInfo] = field(default_factory=dict)
    address: str = "fake://engine"
    reachable: bool = True
    check_fails: str | None = None  # what `nginx -t` in the gateway says, when it refuses its files
    server: ServerModel = field(default_factory=ServerModel)

    def __post_init__(self):
        self._containers: dict[str, FakeContainer] = {}
        self._volumes: dict[str, dict] = {}  # name -> {"labels": {...}, "files": {relative path: bytes}}
        self._networks: dict[str, dict] = {}  # name -> {"subnet", "internal", "host_address"}
        self._ids = itertools.count(1)
        self.calls: list[tuple] = []  # every effectful call, in order

    # --- helpers for tests ---------------------------------------------------------

    def add_image(self, reference: str, working_dir: str | None = "/data",
                  command: tuple[str, ...] | None = ("run", "/config.yaml"),
                  files: dict[str, bytes] | None = None, labels: dict[str, str] | None = None) -> None:
        self.images[reference] = ImageInfo(id=f"sha256:{abs(hash(reference)):064x}"[:71], working_dir=working_dir,
                                           command=command, labels=labels or {})
        self.image_files = getattr(self, "image_files", {})
        self.image_files[reference] = files if files is not None else {"/config.yaml": b"persist_path: /data\n"}

    def volume_files(self, name: str) -> dict[str, bytes]:
        return self._volumes[name]["files"]

    def put_volume(self, name: str, files: dict[str, bytes], labels: dict | None = None) -> None:
        self._volumes[name] = {"labels": labels or {}, "files": dict(files)}

    def write_stdout(self, name: str, text: str) -> None:
        """The container writes to its stdout (kept as the engine keeps a log, across restarts)."""
        self._get(name).stdout.extend(text.encode())

    def kill(self, name: str) -> None:
        """The container dies (as by SIGKILL), the engine does not restart it."""
        self._containers[name].state = "exited"
        self._containers[name].exit_code = 137

    def _new_id(self) -> str:
        """A container id as an engine makes them: 64 hex digits, unlike in its first 12 too."""
        return hashlib.sha256(f"container {next(self._ids)}".encode()).hexdigest()

    def _check(self) -> None:
        if not self.reachable:
            raise EngineUnavailable(f"no container engine answers at {self.address}", self.address, "a test")

    def _get(self, name: str) -> FakeContainer:
        for key, container in self._containers.items():
            if name in (key, container.id):
                return container
        raise EngineError(f"no such container: {name}")

    def _name_of(self, name_or_id: str) -> str:
        for key, container in self._containers.items():
            if name_or_id in (key, container.id):
                return key
        return name_or_id

    # --- images --------------------------------------------------------------------

    def image(self, reference: str) -> ImageInfo | None:
        self._check()
        return self.images.get(reference)

    def pull(self, reference: str, on_event) -> None:
        self._check()
        self.calls.append(("pull", reference))
        raise EngineError(f"cannot pull {reference}: no registry in the fake engine")

    def build(self, context: str, tag: str, on_output) -> None:
        self._check()
        self.calls.append(("build", tag))
        self.add_image(tag)

    # --- containers ----------------------------------------------------------------

    def container(self, name: str) -> ContainerInfo | None:
        self._check()
        key = self._name_of(name)
        found = self._containers.get(key)
        if found is None:
            return None
        spec = found.spec
        networks = tuple(sorted(a.network for a in spec.networks)) if spec is not None else ()
        return ContainerInfo(
            id=found.id, name=key, state=found.state, image=found.image, labels=dict(found.labels),
            exit_code=found.exit_code, started_at=found.started_at, restart_count=found.restart_count,
            volume=found.volume, published=(spec.host, spec.port) if spec is not None and spec.publish else None,
            network_mode=spec.networks[0].network if spec is not None and spec.networks else "default",
            addresses=tuple(a.address for a in spec.networks if a.address) if spec is not None else (),
            networks=networks)

    def containers(self, project: str | None = None) -> list[ContainerInfo]:
        self._check()
        from chromactl.spec import LABEL_PROJECT

        return [self.container(name) for name, c in self._containers.items()
                if c.spec is not None and LABEL_PROJECT in c.labels
                and (project is None or c.labels[LABEL_PROJECT] == project)]

    def create_and_start(self, spec) -> ContainerInfo:
        self._check()
        if spec.name in self._containers:
            raise Conflict(f"the container name {spec.name} is already in use")
        for attachment in spec.networks:
            if attachment.network not in self._networks:
                raise EngineError(f"network {attachment.network} not found")
        if spec.volume and spec.volume not in self._volumes:
            self._volumes[spec.volume] = {"labels": {}, "files": {}}
        self._containers[spec.name] = FakeContainer(id=self._new_id(), spec=spec, image=spec.image,
                                                    labels=dict(spec.labels), volume=spec.volume,
                                                    path=spec.data_path)
        self.calls.append(("create", spec.name))
        self.start(spec.name, spec.host, spec.port if spec.publish else None)
        return self.container(spec.name)

    def start(self, name: str, host: str | None = None, port: int | None = None) -> None:
        self._check()
        found = self._get(name)
        if port is not None:
            for other_name, other in self._containers.items():
                if other is not found and other.state == "running" and other.spec is not None \
                        and other.spec.publish and other.spec.port == port:
                    raise PortInUse(f"port {port} on {host} is already in use by container {other_name}", host or "",
                                    port, other_name)
        self.calls.append(("start", self._name_of(name)))
        found.state, found.started_at = "running", _stamp()
        if found.labels.get(LABEL_SERVICE) == "chroma":
            if self.server.exits_at_start:
                found.state, found.exit_code = "exited", 1
            elif not self.server.writes_elsewhere and found.volume:  # Chroma makes its database at start
                self._volumes[found.volume]["files"].setdefault("chroma.sqlite3", b"SQLite format 3\x00")

    def restart(self, name: str, timeout: int = 10) -> None:
        self._check()
        self.calls.append(("restart", self._name_of(name)))
        found = self._get(name)
        found.state, found.started_at = "running", _stamp()

    def stop(self, name: str, timeout: int = 10) -> None:
        self._check()
        key = self._name_of(name)
        if key in self._containers:
            self.calls.append(("stop", key))
            self._containers[key].state = "exited"

    def remove(self, name: str) -> None:
        self._check()
        key = self._name_of(name)
        if key in self._containers:
            self.calls.append(("remove", key))
            del self._containers[key]

    def logs(self, name: str, tail="all", follow: bool = False):
        self._check()
        return iter([b"a log line\n"])

    def stdout_log(self, name: str, since: float | None = None):
        """Its stdout in chunks that cut lines anywhere, as a real engine's may; `since` is
        left to the reader (the fake keeps no time per line)."""
        self._check()
        self.calls.append(("read log", self._name_of(name)))
        data = bytes(self._get(name).stdout)
        return iter([data[i:i + 7] for i in range(0, len(data), 7)])

    def exec(self, name: str, command: list[str]) -> str | None:
        self._check()
        self.calls.append(("exec", self._name_of(name), command[0]))
        return self.check_fails

    def publisher_of(self, port: int, exclude: str | None = None) -> str | None:
        return None

    # --- networks ------------------------------------------------------------------

    def ensure_network(self, name: str, project: str, *, internal: bool = False, subnet: str | None = None) -> None:
        self._check()
        if name not in self._networks:
            self.calls.append(("create network", name))
            self._networks[name] = {"subnet": subnet or "172.18.0.0/16", "internal": internal,
                                    "host_address": not internal}

    def network(self, name: str) -> NetworkInfo | None:
        self._check()
        found = self._networks.get(name)
        if found is None:
            return None
        members = {n: next((a.address or "" for a in c.spec.networks if a.network == name), "")
                   for n, c in self._containers.items() if c.spec is not None and name in
                   [a.network for a in c.spec.networks]}
        if self.server.stray_on_internal and found["internal"]:
            members[self.server.stray_on_internal] = "0.0.0.0"
        return NetworkInfo(name, found["subnet"], found["internal"], found["host_address"], members)

    def subnets(self) -> list[str]:
        return [n["subnet"] for n in self._networks.values()]

    def free_subnet(self) -> str:
        taken = set(self.subnets())
        return next(f"172.{20 + i}.0.0/16" for i in range(200) if f"172.{20 + i}.0.0/16" not in taken)

    def remove_network(self, name: str) -> None:
        self._check()
        if self._networks.pop(name, None) is not None:
            self.calls.append(("remove network", name))

    # --- volumes -------------------------------------------------------------------

    def volume_exists(self, name: str) -> bool:
        self._check()
        return name in self._volumes

    def create_volume(self, name: str, labels: dict[str, str]) -> None:
        self._check()
        if name in self._volumes:
            raise Conflict(f"volume {name} already exists")
        self.calls.append(("create volume", name))
        self._volumes[name] = {"labels": dict(labels), "files": {}}

    def remove_volume(self, name: str) -> bool:
        self._check()
        self.calls.append(("remove volume", name))
        return self._volumes.pop(name, None) is not None

    def volumes(self, project: str) -> list[str]:
        from chromactl.spec import LABEL_PROJECT

        return sorted(n for n, v in self._volumes.items() if v["labels"].get(LABEL_PROJECT) == project)

    def volume_mountpoint(self, name: str) -> str | None:
        return None

    def create_holder(self, name: str, image: str, volume: str, path: str, labels: dict[str, str]) -> None:
        self._check()
        self._containers[name] = FakeContainer(id=self._new_id(), spec=None, image=image,
                                               labels=dict(labels), volume=volume, path=path)

    def image_file(self, image: str, path: str) -> bytes | None:
        self._check()
        return self.image_files.get(image, {}).get(path)

    def archive_out(self, name: str, path: str):
        """A tar of `path` (the data folder, or one file in it), top entry its own name."""
        self._check()
        found = self._get(name)
        files = self._volumes[found.volume]["files"]
        inside = path[len(found.path):].lstrip("/")
        top = path.rstrip("/").rsplit("/", 1)[-1]
        if inside and inside not in files:
            raise EngineError(f"cannot read {path} from {name}: no such file")
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            if inside:  # one file
                self._add(tar, top, files[inside])
            else:
                folder = tarfile.TarInfo(top)
                folder.type = tarfile.DIRTYPE
                tar.addfile(folder)
                for relative, content in sorted(files.items()):
                    self._add(tar, f"{top}/{relative}", content)
        data = buffer.getvalue()
        return iter([data[i:i + 65536] for i in range(0, len(data), 65536)])

    @staticmethod
    def _add(tar: tarfile.TarFile, name: str, content: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size = len(content)
        tar.addfile(info, io.BytesIO(content))

    def archive_in(self, name: str, path: str, data) -> None:
        self._check()
        found = self._get(name)
        files = self._volumes[found.volume]["files"]
        raw = data if isinstance(data, bytes) else data.read()
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tar:
            for member in tar:
                if member.isfile():
                    files[member.name] = tar.extractfile(member).read()


class FakeProber:
    """chromactl.probe.Prober answered from the fake engine's state: a server answers when
    its containers run, and as engine.server says."""

    def __init__(self, engine: FakeEngine):
        self.engine = engine
        self.probed: list[str] = []

    def _serving(self) -> FakeContainer | None:
        for container in self.engine._containers.values():
            if container.labels.get(LABEL_SERVICE) == "chroma" and container.state == "running":
                gateway = next((g for g in self.engine._containers.values()
                                if g.labels.get(LABEL_SERVICE) == "gateway"), None)
                if gateway is None or gateway.state == "running":
                    return container
        return None

    def wait_for_heartbeat(self, url, timeout, still_running):
        self.probed.append("heartbeat")
        if not still_running():
            return None
        serving = self._serving()
        if serving is None or not self.engine.server.answers or serving.volume in self.engine.server.silent_on:
            return Heartbeat(False)
        return Heartbeat(True, 1.0, "/api/v2")

    def server_version(self, url, api):
        return self.engine.server.api_version

    def port_open(self, host: str, port: int) -> bool:
        return self._serving() is not None

    def probe_auth(self, url, api, settings, probe_secret) -> AuthProbe:
        self.probed.append("auth")
        server = self.engine.server
        if server.mute_auth_checks:
            server.mute_auth_checks -= 1
            return AuthProbe(None)
        write = (403 if server.enforces_rbac else 200) if settings is not None and settings.rbac else None
        return AuthProbe(403 if server.enforces_auth else 200, 200 if server.accepts_probe else 403, write)

