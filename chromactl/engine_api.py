"""What chromactl asks of a container engine, as a typed interface: the data it reads
back and the errors it can meet. No engine SDK here: chromactl.engine implements this
with Docker's SDK, and the tests implement it with a fake to check decisions without
an engine.

The adapter raises these errors with plain facts; the layer that knows what the
operator was doing adds the hint (see chromactl.hints)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Protocol

from chromactl.errors import EXIT_DOCKER_UNAVAILABLE, ChromactlError

if TYPE_CHECKING:
    from chromactl.spec import ContainerSpec

# --- errors ---------------------------------------------------------------------------


class EngineError(ChromactlError):
    """The engine answered, but refused or failed the operation."""


class EngineUnavailable(EngineError):
    """No engine answers at the address tried."""

    exit_code = EXIT_DOCKER_UNAVAILABLE

    def __init__(self, message: str, address: str | None = None, source: str | None = None,
                 hint: str | None = None):
        super().__init__(message, hint)
        self.address = address  # e.g. unix:///var/run/docker.sock
        self.source = source  # where the address came from: DOCKER_HOST, a context, the default


class NoSuchImage(EngineError):
    pass


class PortInUse(EngineError):
    def __init__(self, message: str, host: str, port: int, holder: str | None):
        super().__init__(message)
        self.host, self.port, self.holder = host, port, holder  # holder: a container's name, or None


class LimitsRefused(EngineError):
    """The engine's default resource limits for containers are above what its host allows
    (Podman's 1048576 open files on a host that allows fewer): no container can start."""


class Conflict(EngineError):
    """The object is busy or in a state that forbids the operation (e.g. restarting)."""


# --- what the engine tells -------------------------------------------------------------


@dataclass(frozen=True)
class ContainerInfo:
    id: str
    name: str
    state: str  # created, running, restarting, paused, exited, dead
    image: str
    labels: dict[str, str] = field(default_factory=dict)
    exit_code: int | None = None
    started_at: str | None = None
    restart_count: int = 0
    volume: str | None = None
    published: tuple[str, int] | None = None  # (host address, port)
    network_mode: str = ""
    addresses: tuple[str, ...] = ()  # its IP addresses on the engine's networks
    image_id: str = ""
    networks: tuple[str, ...] = ()  # the names of the networks it is attached to


@dataclass(frozen=True)
class NetworkInfo:
    name: str
    subnet: str | None  # its IPv4 subnet
    internal: bool  # no route out of it
    host_address: bool  # the host's side of its bridge has an IPv4 address (a route in from the host)
    containers: dict[str, str] = field(default_factory=dict)  # container name -> its IPv4 address there


@dataclass(frozen=True)
class ImageInfo:
    id: str
    working_dir: str | None = None
    command: tuple[str, ...] | None = None  # the image's Cmd
    entrypoint: tuple[str, ...] | None = None
    volumes: tuple[str, ...] = ()  # the image's declared VOLUME paths
    labels: dict[str, str] = field(default_factory=dict)
    environment: dict[str, str] = field(default_factory=dict)


# --- the interface ---------------------------------------------------------------------


class Engine(Protocol):
    """The operations chromactl needs. A missing object is None (look-ups) or a no-op
    (removals); everything else that fails raises an EngineError."""

    address: str  # where it was reached, for messages

    # images
    def image(self, reference: str) -> ImageInfo | None: ...
    def pull(self, reference: str, on_event: Callable[[dict], None]) -> None: ...
    def build(self, context: str, tag: str, on_output: Callable[[str], None]) -> None: ...

    # containers
    def container(self, name: str) -> ContainerInfo | None: ...
    def containers(self, project: str | None = None) -> list[ContainerInfo]: ...
    def create_and_start(self, spec: ContainerSpec) -> ContainerInfo: ...
    def start(self, name: str, host: str | None = None, port: int | None = None) -> None: ...
    def restart(self, name: str, timeout: int = 10) -> None: ...
    def stop(self, name: str, timeout: int = 10) -> None: ...
    def remove(self, name: str) -> None: ...
    def logs(self, name: str, tail: int | str = "all", follow: bool = False) -> Iterator[bytes]: ...
    def stdout_log(self, name: str, since: float | None = None) -> Iterator[bytes]: ...
    def exec(self, name: str, command: list[str]) -> str | None: ...
    def publisher_of(self, port: int, exclude: str | None = None) -> str | None: ...

    # networks
    def ensure_network(self, name: str, project: str, *, internal: bool = False,
                       subnet: str | None = None) -> None: ...
    def network(self, name: str) -> NetworkInfo | None: ...
    def subnets(self) -> list[str]: ...
    def free_subnet(self) -> str: ...
    def remove_network(self, name: str) -> None: ...

    # volumes
    def volume_exists(self, name: str) -> bool: ...
    def create_volume(self, name: str, labels: dict[str, str]) -> None: ...
    def remove_volume(self, name: str) -> bool: ...
    def volumes(self, project: str) -> list[str]: ...
    def volume_mountpoint(self, name: str) -> str | None: ...

    # files, through a container that never runs
    def image_file(self, image: str, path: str) -> bytes | None: ...
    def create_holder(self, name: str, image: str, volume: str, path: str, labels: dict[str, str]) -> None: ...
    def archive_out(self, name: str, path: str) -> Iterator[bytes]: ...
    def archive_in(self, name: str, path: str, data: bytes | Iterable[bytes]) -> None: ...
