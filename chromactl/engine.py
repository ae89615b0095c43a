"""The container engine through Docker's SDK: chromactl.engine_api's interface, and the
only module that imports docker. Every SDK or transport error becomes one of
engine_api's typed errors here, stating facts only; the commands add the hints."""

from __future__ import annotations

import os
import re
import secrets
import time
from contextlib import contextmanager
from typing import Callable, Iterator

import docker
import docker.errors
import docker.types
import requests.exceptions
import urllib3.exceptions

from chromactl.archive import extract_bytes
from chromactl.engine_api import (
    Conflict,
    ContainerInfo,
    EngineError,
    EngineUnavailable,
    ImageInfo,
    LimitsRefused,
    NetworkInfo,
    NoSuchImage,
    PortInUse,
)
from chromactl.images import pull_reference
from chromactl.spec import LABEL_PROJECT, ContainerSpec

DEFAULT_ADDRESS = "unix:///var/run/docker.sock"
_PORT_TAKEN = re.compile(r"port is already allocated|address already in use|failed to bind host port|"
                         r"Bind for [^ ]+ failed", re.IGNORECASE)


def engine_address(environ: dict[str, str] | None = None) -> tuple[str, str]:
    """(address, where it came from), as the docker CLI resolves it: DOCKER_HOST, then the
    current context (DOCKER_CONTEXT or the CLI's config), then the default socket."""
    environ = os.environ if environ is None else environ
    if environ.get("DOCKER_HOST"):
        return environ["DOCKER_HOST"], "DOCKER_HOST"
    from docker.context import ContextAPI
    from docker.context.config import get_current_context_name

    name = environ.get("DOCKER_CONTEXT") or get_current_context_name()
    if name and name != "default":
        try:
            context = ContextAPI.get_context(name)
        except docker.errors.DockerException:
            context = None
        if context is not None and context.Host:
            via = "DOCKER_CONTEXT" if environ.get("DOCKER_CONTEXT") else "the current docker context"
            return context.Host, f"{via} {name!r}"
    return DEFAULT_ADDRESS, "the default socket"


def _explain(exc: docker.errors.APIError) -> str:
    text = exc.explanation if isinstance(exc.explanation, str) else str(exc)
    return text.strip().splitlines()[0] if text.strip() else str(exc)


class DockerEngine:
    """engine_api.Engine on a Docker-compatible API (Docker, Podman's service)."""

    def __init__(self, client: docker.DockerClient, address: str = DEFAULT_ADDRESS, source: str = ""):
        self._client = client
        self._api = client.api
        self.address = address
        self.source = source

    @classmethod
    def connect(cls) -> "DockerEngine":
        address, source = engine_address()
        unavailable = f"no container engine answers at {address} (from {source})"
        try:
            client = docker.from_env(timeout=120, use_ssh_client=address.startswith("ssh://"))
            client.ping()
        except (docker.errors.DockerException, requests.exceptions.RequestException, OSError) as exc:
            raise EngineUnavailable(f"{unavailable}: {_short(exc)}", address, source) from None
        return cls(client, address, source)

    @contextmanager
    def _translated(self, action: str) -> Iterator[None]:
        """Every SDK or transport error inside becomes an engine_api error saying what failed."""
        try:
            yield
        except docker.errors.APIError as exc:
            text = _explain(exc)
            if exc.status_code == 409 or "is restarting" in text or "is already in progress" in text:
                raise Conflict(f"{action}: {text}") from None
            if exc.status_code == 404 and "image" in text.lower():
                raise NoSuchImage(f"{action}: {text}") from None
            raise EngineError(f"{action}: {text}") from None
        except requests.exceptions.Timeout:
            raise EngineUnavailable(f"{action}: the engine at {self.address} did not answer in time",
                                    self.address, self.source) from None
        except (requests.exceptions.ConnectionError, docker.errors.DockerException) as exc:
            if isinstance(exc, requests.exceptions.ConnectionError) or "Connection" in str(exc):
                raise EngineUnavailable(f"{action}: lost the engine at {self.address}", self.address,
                                        self.source) from None
            raise EngineError(f"{action}: {exc}") from None
        except (requests.exceptions.RequestException, urllib3.exceptions.HTTPError, ConnectionError) as exc:
            # A stream cut mid-way surfaces as urllib3's own error, not wrapped by requests.
            raise EngineUnavailable(f"{action}: the connection to the engine at {self.address} broke "
                                    f"({type(exc).__name__})", self.address, self.source) from None

    # --- images --------------------------------------------------------------------

    def image(self, reference: str) -> ImageInfo | None:
        with self._translated(f"cannot inspect image {reference}"):
            try:
                attrs = self._api.inspect_image(reference)
            except docker.errors.ImageNotFound:
                return None
        config = attrs.get("Config") or {}
        env = dict(item.partition("=")[::2] for item in config.get("Env") or [])
        return ImageInfo(id=attrs["Id"], working_dir=config.get("WorkingDir") or None,
                         command=tuple(config["Cmd"]) if config.get("Cmd") else None,
                         entrypoint=tuple(config["Entrypoint"]) if config.get("Entrypoint") else None,
                         volumes=tuple(sorted(config.get("Volumes") or {})), labels=config.get("Labels") or {},
                         environment=env)

    def pull(self, reference: str, on_event: Callable[[dict], None]) -> None:
        repository, tag = pull_reference(reference)
        with self._translated(f"cannot pull {reference}"):
            for event in self._api.pull(repository, tag=tag, stream=True, decode=True):
                if "error" in event:
                    raise EngineError(f"cannot pull {reference}: {event['error'].strip()}")
                on_event(event)

    def build(self, context: str, tag: str, on_output: Callable[[str], None]) -> None:
        with self._translated(f"building {tag} from {context} failed"):
            try:
                for event in self._api.build(path=context, tag=tag, rm=True, forcerm=True, decode=True):
                    if "error" in event:
                        raise EngineError(f"building {tag} from {context} failed: {event['error'].strip()}")
                    if "stream" in event:
                        on_output(event["stream"])
            except TypeError as exc:  # the SDK's way of saying the context is not usable
                raise EngineError(f"cannot build from {context}: {exc}") from None

    # --- containers ----------------------------------------------------------------

    def container(self, name: str) -> ContainerInfo | None:
        with self._translated(f"cannot inspect container {name}"):
            try:
                return _info(self._api.inspect_container(name))
            except docker.errors.NotFound:
                return None

    def containers(self, project: str | None = None) -> list[ContainerInfo]:
        """Every chromactl container on the engine, or those of one project."""
        label = f"{LABEL_PROJECT}={project}" if project else LABEL_PROJECT
        with self._translated("cannot list containers"):
            found = self._api.containers(all=True, filters={"label": label})
            infos = []
            for summary in found:
                try:
                    infos.append(_info(self._api.inspect_container(summary["Id"])))
                except docker.errors.NotFound:  # removed meanwhile
                    continue
            return infos

    def create_and_start(self, spec: ContainerSpec) -> ContainerInfo:
        mounts = [docker.types.Mount(target=m.target, source=m.source, type=m.kind, read_only=m.read_only)
                  for m in spec.mounts]
        if spec.volume:
            mounts.append(docker.types.Mount(target=spec.data_path, source=spec.volume, type="volume"))
        first = spec.networks[0] if spec.networks else None
        with self._translated(f"cannot create container {spec.name}"):
            if spec.volume and not self.volume_exists(spec.volume):
                self._client.volumes.create(name=spec.volume, labels={LABEL_PROJECT: spec.labels[LABEL_PROJECT]})
            host_config = self._api.create_host_config(
                mounts=mounts, port_bindings={spec.container_port: (spec.host, spec.port)} if spec.publish else None,
                restart_policy={"Name": spec.restart_policy}, network_mode=first.network if first else None,
                tmpfs={path: "" for path in spec.tmpfs} or None,
                log_config=docker.types.LogConfig(type="json-file", config=spec.log_rotation.options())
                if spec.log_rotation else None)
            networking = None
            if first is not None:
                endpoint = self._api.create_endpoint_config(ipv4_address=first.address) if first.address else {}
                networking = self._api.create_networking_config({first.network: endpoint})
            created = self._api.create_container(
                spec.image, name=spec.name, environment=spec.environment, labels=spec.labels,
                ports=[spec.container_port] if spec.publish else None, host_config=host_config, detach=True,
                command=list(spec.command) if spec.command else None, user=spec.user, networking_config=networking)
        try:
            with self._translated(f"cannot attach {spec.name} to its networks"):
                for more in spec.networks[1:]:
                    self._api.connect_container_to_network(created["Id"], more.network, ipv4_address=more.address)
        except EngineError:
            self.remove(created["Id"])
            raise
        try:
            self.start(spec.name, spec.host, spec.port if spec.publish else None)
        except EngineError:
            self.remove(created["Id"])
            raise
        return self.container(spec.name)

    def start(self, name: str, host: str | None = None, port: int | None = None) -> None:
        try:
            with self._translated(f"cannot start {name}"):
                self._api.start(name)
        except EngineError as exc:
            if "error setting rlimit" in exc.message:
                raise LimitsRefused(f"{exc.message.split(': runc', 1)[0]}: the engine's default limits for containers "
                                    f"are above what its host allows") from None
            if port is not None and _PORT_TAKEN.search(exc.message):
                holder = self.publisher_of(port, exclude=name)
                raise PortInUse(f"port {port} on {host} is already in use by "
                                f"{f'container {holder}' if holder else 'another program'}", host or "", port,
                                holder) from None
            raise

    def restart(self, name: str, timeout: int = 10) -> None:
        with self._translated(f"cannot restart {name}"):
            self._api.restart(name, timeout=timeout)

    def stop(self, name: str, timeout: int = 10) -> None:
        with self._translated(f"cannot stop {name}"):
            try:
                self._api.stop(name, timeout=timeout)
            except docker.errors.NotFound:
                pass

    def remove(self, name: str) -> None:
        """Remove a container (never its volumes)."""
        with self._translated(f"cannot remove {name}"):
            try:
                self._api.remove_container(name, force=True, v=False)
            except docker.errors.NotFound:
                pass

    def logs(self, name: str, tail: int | str = "all", follow: bool = False) -> Iterator[bytes]:
        """The container's log as chunks. Followed, the stream is read inside the error
        translation too, so an engine lost mid-stream is a clear error, not a traceback."""
        action = f"cannot read the logs of {name}"
        if not follow:
            with self._translated(action):
                return iter([self._api.logs(name, tail=tail)])
        return self._follow_logs(name, tail, action)

    def stdout_log(self, name: str, since: float | None = None) -> Iterator[bytes]:
        """The container's stdout alone (never stderr), as much as the engine keeps (its
        rotated files too), from `since` (seconds since the epoch) on, in chunks that need
        not end at a line's end. The stream is read inside the error translation."""
        with self._translated(f"cannot read the log of {name}"):
            yield from self._api.logs(name, stdout=True, stderr=False, stream=True, follow=False,
                                      since=since if since and since > 0 else None)

    def _follow_logs(self, name: str, tail: int | str, action: str) -> Iterator[bytes]:
        with self._translated(action):
            yield from self._api.logs(name, stream=True, follow=True, tail=tail)
            # The stream ends when the container stops, or quietly when the engine goes away.
            self._api.ping()

    def publisher_of(self, port: int, exclude: str | None = None) -> str | None:
        """The running container publishing this host port, if any."""
        with self._translated("cannot list containers"):
            for summary in self._api.containers():
                name = summary["Names"][0].lstrip("/") if summary.get("Names") else summary["Id"][:12]
                if name == exclude:
                    continue
                if any(p.get("PublicPort") == port for p in summary.get("Ports", [])):
                    return name
        return None

    def exec(self, name: str, command: list[str]) -> str | None:
        """Run a command (one that changes nothing: it may run twice) in a running container:
        None when it succeeds, else its last output line. Over ssh:// the SDK closes each
        exec's stream by writing to an ssh process that may have ended already: the exec ran,
        only its output is lost, so its exit code is read and a failure is run again for it."""
        with self._translated(f"cannot run {command[0]} in {name}"):
            for attempt in (1, 2):
                created = self._api.exec_create(name, command, stdout=True, stderr=True)
                try:
                    output = self._api.exec_start(created["Id"]).decode(errors="replace").strip()
                except (BrokenPipeError, ConnectionResetError):
                    output = None
                code = self._exit_code(created["Id"])
                if code == 0:
                    return None
                if output is not None or attempt == 2:
                    break
            return output.splitlines()[-1] if output else f"{command[0]} failed (exit {code})"

    def _exit_code(self, exec_id: str) -> int | None:
        for _ in range(50):
            state = self._api.exec_inspect(exec_id)
            if not state.get("Running"):
                return state.get("ExitCode")
            time.sleep(0.1)
        return None

    # --- networks ------------------------------------------------------------------

    def ensure_network(self, name: str, project: str, *, internal: bool = False, subnet: str | None = None) -> None:
        """A bridge network of that name. `internal`: no route out, and (Docker's bridge
        option inhibit_ipv4) no address on the host's side, so the host cannot route in."""
        with self._translated(f"cannot create network {name}"):
            if self.network(name) is not None:
                return
            ipam = docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet=subnet)]) if subnet else None
            options = {"com.docker.network.bridge.inhibit_ipv4": "true"} if internal else None
            self._api.create_network(name, driver="bridge", internal=internal, options=options, ipam=ipam,
                                     labels={LABEL_PROJECT: project})

    def free_subnet(self) -> str:
        """An IPv4 subnet the engine considers free, from its own address pools (the
        daemon's default-address-pools): found by making a network and removing it, since
        static addresses need a subnet given explicitly when the real one is made."""
        name = f"chromactl-subnet-{secrets.token_hex(4)}"
        with self._translated("cannot find a free subnet for a network"):
            created = self._api.create_network(name, driver="bridge", internal=True,
                                               options={"com.docker.network.bridge.inhibit_ipv4": "true"})
            try:
                subnet = self.network(name).subnet
            finally:
                self._api.remove_network(created["Id"])
        if subnet is None:
            raise EngineError("the engine gave the new network no IPv4 subnet")
        return subnet

    def network(self, name: str) -> NetworkInfo | None:
        with self._translated(f"cannot inspect network {name}"):
            try:
                attrs = self._api.inspect_network(name)
            except docker.errors.NotFound:
                return None
        if attrs.get("Name") != name:
            return None
        configs = (attrs.get("IPAM") or {}).get("Config") or []
        ipv4 = next((c for c in configs if c.get("Subnet") and ":" not in c["Subnet"]), {})
        options = attrs.get("Options") or {}
        containers = {c.get("Name", ""): (c.get("IPv4Address") or "").split("/")[0]
                      for c in (attrs.get("Containers") or {}).values()}
        # The host's side of the bridge gets an address when the network has a gateway:
        # Docker gives none with inhibit_ipv4, Podman none to an internal network ("<nil>").
        gateway = ipv4.get("Gateway") not in (None, "", "<nil>")
        inhibited = options.get("com.docker.network.bridge.inhibit_ipv4") == "true"
        return NetworkInfo(name=name, subnet=ipv4.get("Subnet"), internal=bool(attrs.get("Internal")),
                           host_address=gateway and not inhibited, containers=containers)

    def subnets(self) -> list[str]:
        """The IPv4 subnets of every network on the engine."""
        with self._translated("cannot list networks"):
            found = []
            for summary in self._api.networks():
                for config in (summary.get("IPAM") or {}).get("Config") or []:
                    if config.get("Subnet") and ":" not in config["Subnet"]:
                        found.append(config["Subnet"])
            return found

    def remove_network(self, name: str) -> None:
        with self._translated(f"cannot remove network {name}"):
            for network in self._api.networks(names=[name]):
                if network.get("Name") == name:
                    self._api.remove_network(network["Id"])

    # --- volumes -------------------------------------------------------------------

    def volume_exists(self, name: str) -> bool:
        with self._translated(f"cannot inspect volume {name}"):
            try:
                self._api.inspect_volume(name)
                return True
            except docker.errors.NotFound:
                return False

    def remove_volume(self, name: str) -> bool:
        with self._translated(f"cannot remove volume {name}"):
            try:
                self._api.remove_volume(name)
                return True
            except docker.errors.NotFound:
                return False

    def create_volume(self, name: str, labels: dict[str, str]) -> None:
        """A new, empty volume; one of that name already there is refused (never reused)."""
        if self.volume_exists(name):
            raise Conflict(f"volume {name} already exists")
        with self._translated(f"cannot create volume {name}"):
            self._client.volumes.create(name=name, labels=labels)

    def volumes(self, project: str) -> list[str]:
        """The names of a project's volumes (by chromactl's label)."""
        with self._translated("cannot list volumes"):
            found = self._api.volumes(filters={"label": f"{LABEL_PROJECT}={project}"}).get("Volumes") or []
            return sorted(v["Name"] for v in found)

    def volume_mountpoint(self, name: str) -> str | None:
        """Where the engine keeps the volume's files on this host (local driver), or None."""
        with self._translated(f"cannot inspect volume {name}"):
            try:
                return self._api.inspect_volume(name).get("Mountpoint") or None
            except docker.errors.NotFound:
                return None

    # --- the data of a volume, through a container that never runs ----------------------

    def create_holder(self, name: str, image: str, volume: str, path: str, labels: dict[str, str]) -> None:
        """A container that is created and never started, the volume mounted at `path` and
        no network: only to stream the volume's files out or in (no extra image or tool)."""
        self.remove(name)  # left from an interrupted run
        with self._translated(f"cannot create container {name}"):
            host_config = self._api.create_host_config(
                mounts=[docker.types.Mount(target=path, source=volume, type="volume")], network_mode="none")
            self._api.create_container(image, name=name, labels=labels, host_config=host_config,
                                       network_disabled=True, detach=True)

    def image_file(self, image: str, path: str) -> bytes | None:
        """One file of an image (e.g. its /config.yaml), read through a container that is
        created and never started; None when the image has no such file."""
        with self._translated(f"cannot read {path} from image {image}"):
            created = self._api.create_container(image, host_config=self._api.create_host_config(network_mode="none"),
                                                 network_disabled=True, labels={LABEL_PROJECT + ".reader": "1"})
            try:
                chunks, _ = self._api.get_archive(created["Id"], path)
                return extract_bytes(chunks)
            except docker.errors.NotFound:
                return None
            finally:
                self._api.remove_container(created["Id"], force=True)

    def archive_out(self, name: str, path: str) -> Iterator[bytes]:
        """A tar stream of `path` in a (stopped) container, in chunks; the top entry is the
        folder's own name. An error mid-stream is an engine error too."""
        with self._translated(f"cannot read {path} from {name}"):
            chunks, _ = self._api.get_archive(name, path, chunk_size=1024 * 1024)
            yield from chunks

    def archive_in(self, name: str, path: str, data) -> None:
        """Extract a tar (bytes or a readable file) into `path` of a container that is not running."""
        with self._translated(f"cannot write into {path} of {name}"):
            if not self._api.put_archive(name, path, data):
                raise EngineError(f"the engine refused the archive for {path} of {name}")


def _short(exc: Exception) -> str:
    text = str(exc)
    match = re.search(r"(No such file or directory|Connection refused|Permission denied|timed out|"
                      r"Name or service not known)", text)
    return match[1].lower() if match else text.splitlines()[0][:160]


def _info(attrs: dict) -> ContainerInfo:
    state = attrs.get("State", {})
    config = attrs.get("Config", {})
    # The data volume: the one writable volume (the config volume is mounted read-only, and
    # comes first when Chroma reads credential files from it).
    volume = next((m.get("Name") for m in attrs.get("Mounts", []) if m.get("Type") == "volume" and m.get("RW", True)),
                  None)
    # What the engine really publishes: a Chroma behind a gateway must have nothing here.
    published = None
    for bindings in (attrs.get("HostConfig", {}).get("PortBindings") or {}).values():
        for binding in bindings or []:
            published = (binding.get("HostIp") or "0.0.0.0", int(binding["HostPort"]))
    networks = (attrs.get("NetworkSettings") or {}).get("Networks") or {}
    return ContainerInfo(
        id=attrs["Id"], name=attrs["Name"].lstrip("/"), state=state.get("Status", "unknown"),
        image=config.get("Image", ""), labels=config.get("Labels") or {}, exit_code=state.get("ExitCode"),
        started_at=state.get("StartedAt"), restart_count=attrs.get("RestartCount", 0), volume=volume,
        published=published, network_mode=attrs.get("HostConfig", {}).get("NetworkMode") or "",
        addresses=tuple(n["IPAddress"] for n in networks.values() if n.get("IPAddress")),
        image_id=attrs.get("Image", ""), networks=tuple(sorted(networks)),
    )
