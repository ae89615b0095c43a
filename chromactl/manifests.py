"""Render the project as a Compose file or as Kubernetes manifests. Pure: the caller
(chromactl.commands.export) loads the project, reads and writes the files; these
functions return text."""

from __future__ import annotations

import base64
import os
from typing import Any

import yaml

from chromactl import gateway
from chromactl.envfile import ENV_FILE, MOUNT_DIR
from chromactl.images import tag_version
from chromactl.plan import known_data_path
from chromactl.project import Project
from chromactl.spec import (
    CONTAINER_PORT,
    LABEL_AUTH,
    LABEL_NAME,
    LABEL_ORIGIN,
    LABEL_PROJECT,
    LABEL_SERVICE,
    container_name,
    internal_addresses,
    tls_command,
    volume_name,
)

TLS_IN_CONTAINER = "/etc/chromactl/tls"  # where a 0.x Chroma serving TLS itself finds server.pem and server.key

# In a pod, Chroma keeps 8000 and the gateway sidecar listens here.
GATEWAY_POD_PORT = gateway.LISTEN_PORT

# A heartbeat check that needs only bash: Chroma 1.x images have neither curl nor Python.
# HTTP/1.1: Chroma's server answers an HTTP/1.0 request with 400.
_HEALTH_SCRIPT = (
    "exec 3<>/dev/tcp/127.0.0.1/{port} && "
    "printf 'GET {path} HTTP/1.1\\r\\nHost: localhost\\r\\nConnection: close\\r\\n\\r\\n' >&3 && "
    "head -n 1 <&3 | grep -q ' 200 '"
)


def _is_0x(image: str) -> bool:
    version = tag_version(image)
    return version is not None and version < (1, 0, 0)


def heartbeat_path(image: str) -> str:
    version = tag_version(image)
    return "/api/v1/heartbeat" if version is not None and version < (0, 5, 16) else "/api/v2/heartbeat"


def _dump(documents: list[dict[str, Any]], header: str) -> str:
    body = yaml.safe_dump_all(documents, sort_keys=False, default_flow_style=False, width=1000)
    return header + body


def _escape_dollars(value: Any) -> Any:
    """Compose interpolates `$` everywhere in its file: `$$` is a literal dollar."""
    if isinstance(value, str):
        return value.replace("$", "$$")
    if isinstance(value, list):
        return [_escape_dollars(v) for v in value]
    if isinstance(value, dict):
        return {k: _escape_dollars(v) for k, v in value.items()}
    return value


def _healthcheck(image: str, port: int = CONTAINER_PORT, tls: bool = False) -> dict[str, Any]:
    if tls:  # inside the container, over TLS: curl is in the nginx and the 0.x images
        test = ["CMD", "curl", "-fsk", "-o", "/dev/null", f"https://127.0.0.1:{port}{heartbeat_path(image)}"]
    else:
        test = ["CMD", "bash", "-c", _HEALTH_SCRIPT.format(port=port, path=heartbeat_path(image))]
    return {
        "test": test,
        "interval": "10s",
        "timeout": "5s",
        "retries": 5,
        "start_period": "30s",
    }


def render_compose(project: Project, mounted_names: list[str], base_dir: str, gateway_dir: str,
                   gateway_user: tuple[int, int] = (gateway.UNPRIVILEGED_ID, gateway.UNPRIVILEGED_ID),
                   tls_dir: str | None = None, subnet: str | None = None) -> str:
    """A Compose file; paths are relative to `base_dir`, the folder the file is used from.
    With a gateway, Chroma publishes nothing and lives on an internal network (`subnet`)
    that has no address on the host and nothing on it but the gateway, which fronts it.
    With TLS (`tls_dir`: the folder holding server.pem and server.key), the gateway or,
    natively, Chroma 0.x's uvicorn serves it. The data volume is external: `docker-compose
    down -v` cannot delete it."""
    s = project.settings
    relative = os.path.relpath(project.root, base_dir)

    def path(name: str) -> str:
        joined = os.path.normpath(os.path.join(relative, name))
        return joined if joined.startswith(("/", "./", "../")) else "./" + joined

    host = f"[{s.host}]" if ":" in s.host else s.host
    published = [f"{host}:{s.port}:{gateway.LISTEN_PORT if s.uses_gateway else CONTAINER_PORT}"]
    labels = {LABEL_PROJECT: str(project.root), LABEL_NAME: s.name, LABEL_ORIGIN: "compose", LABEL_AUTH: s.auth}
    volumes = [f"{path(name)}:{MOUNT_DIR}/{name}:ro" for name in mounted_names]
    volumes.append(f"data:{known_data_path(project)}")
    chroma: dict[str, Any] = {
        "image": s.image,
        "env_file": [path(ENV_FILE)],
        "volumes": volumes,
        "restart": "unless-stopped",
        "labels": {**labels, LABEL_SERVICE: "chroma"},
        "healthcheck": _healthcheck(s.image, tls=bool(tls_dir) and not s.uses_gateway),
    }
    if tls_dir and not s.uses_gateway:
        volumes.append(f"{path(tls_dir)}:{TLS_IN_CONTAINER}:ro")
        chroma["command"] = list(tls_command(None, f"{TLS_IN_CONTAINER}/server.key", f"{TLS_IN_CONTAINER}/server.pem"))
    services: dict[str, Any] = {"chroma": chroma}
    networks: dict[str, Any] = {}
    if s.uses_gateway:
        # Chroma on an internal network alone, at a static address the gateway's nginx.conf
        # names; each container restarts on its own (no shared namespace to lose).
        chroma_address, gateway_address = internal_addresses(subnet)
        chroma["networks"] = {"internal": {"ipv4_address": chroma_address}}
        services["gateway"] = {
            "image": s.gateway_image,
            "command": list(gateway.COMMAND),
            "user": "{}:{}".format(*gateway_user),
            "volumes": [f"{path(gateway_dir)}:{gateway.MOUNT_DIR}:ro"],
            "tmpfs": ["/tmp"],
            "ports": published,
            "networks": {"default": None, "internal": {"ipv4_address": gateway_address}},
            "restart": "unless-stopped",
            "labels": {**labels, LABEL_SERVICE: "gateway"},
            "healthcheck": _healthcheck(s.image, gateway.LISTEN_PORT, tls=bool(tls_dir)),
            # The audit trail, bounded as `up` bounds it (Compose archives nothing on `down`).
            "logging": {"driver": "json-file", "options": gateway.LOG_ROTATION.options()},
        }
        networks["internal"] = {"internal": True,
                                "driver_opts": {"com.docker.network.bridge.inhibit_ipv4": "true"},
                                "ipam": {"config": [{"subnet": subnet}]}}
    else:
        chroma["ports"] = published
    document = {
        "version": "3.8",  # read by Compose v1 (Debian's docker-compose); Compose v2 ignores it
        "services": services,
        **({"networks": networks} if networks else {}),
        # External: made by `chromactl export` (or `docker volume create`), never by Compose, so
        # that no `docker-compose down -v` can delete the data.
        "volumes": {"data": {"name": volume_name(s), "external": True}},
    }
    header = (
        f"# Compose file for chromactl project {s.name!r}, written by `chromactl export compose`.\n"
        f"# Secrets stay in the files it mounts. Relative paths are from {os.path.abspath(base_dir)}.\n"
        f"# The data volume is {volume_name(s)}, the one `chromactl up` uses: stop that container first\n"
        f"# (`chromactl down`) so that one server at a time owns the data. It is external: create it\n"
        f"# once (`docker volume create {volume_name(s)}`; export does when it reaches the engine).\n"
    )
    return _dump([_escape_dollars(document)], header)


def render_kubernetes(project: Project, environment: dict[str, str], files: dict[str, bytes],
                      namespace: str | None = None, storage: str = "10Gi",
                      gateway_files: dict[str, bytes] | None = None,
                      tls: tuple[bytes, bytes, bytes] | None = None) -> str:
    """A Secret (credential files and env settings), a StatefulSet and a Service.
    Secrets live only in the Secret: the pod spec references them by key, so re-exporting
    after `creds add` changes the Secret and nothing else.

    With a gateway (a sidecar listening on GATEWAY_POD_PORT; Chroma told by its environment
    to listen on the pod's 127.0.0.1 only), the Service points at the gateway's port."""
    k8s = _Kubernetes(project, namespace)
    gateway_files = {name: content for name, content in (gateway_files or {}).items()
                     if name not in (gateway.TLS_CERT_FILE, gateway.TLS_KEY_FILE)} or None  # they are tls.crt/tls.key
    gateway_keys = {name: f"gateway.{name}" for name in sorted(gateway_files or {})}
    env_keys = {key: f"env.{key}" for key in environment}
    secret_data = {key: content for key, content in sorted(files.items())}
    secret_data.update({gateway_keys[name]: content for name, content in sorted((gateway_files or {}).items())})
    secret_data.update({env_keys[key]: value.encode() for key, value in environment.items()})
    if tls:  # the certificate (with its chain), its key, and the CA clients trust
        secret_data.update({"tls.crt": tls[0], "tls.key": tls[1], "ca.crt": tls[2]})

    chroma = k8s.chroma_container(environment, env_keys, bool(gateway_files), tls=bool(tls) and not gateway_files)
    pod_spec = k8s.pod_spec(chroma, files)
    if tls and not gateway_files:
        k8s.add_native_tls(pod_spec, chroma)
    extra: list[dict[str, Any]] = []
    if gateway_files:
        k8s.add_gateway(pod_spec, gateway_keys, tls=bool(tls))
        extra.append(k8s.network_policy())
    documents = [k8s.secret(secret_data), k8s.statefulset(pod_spec, storage), k8s.service(bool(gateway_files)), *extra]
    header = (
        f"# Kubernetes manifests for chromactl project {project.settings.name!r}, written by `chromactl export kubernetes`.\n"
        "# The Secret holds the credential files and the server's settings; apply it only to a\n"
        "# namespace you trust. Chroma reads credentials at start: after changing users, apply and then\n"
        f"# `kubectl rollout restart statefulset/{k8s.name}`.\n"
    )
    return _dump(documents, header)


class _Kubernetes:
    """The objects of one project's manifests, each built by one method."""

    def __init__(self, project: Project, namespace: str | None):
        self.settings = project.settings
        self.data_path = known_data_path(project)  # refused when neither settings nor the tag tell
        self.name = container_name(self.settings)
        self.namespace = namespace
        self.labels = {"app.kubernetes.io/name": "chroma", "app.kubernetes.io/instance": self.settings.name,
                       "app.kubernetes.io/managed-by": "chromactl"}

    def meta(self) -> dict[str, Any]:
        m: dict[str, Any] = {"name": self.name, "labels": dict(self.labels)}
        if self.namespace:
            m["namespace"] = self.namespace
        return m

    def secret(self, data: dict[str, bytes]) -> dict[str, Any]:
        encoded = {key: base64.b64encode(content).decode() for key, content in data.items()}
        return {"apiVersion": "v1", "kind": "Secret", "metadata": self.meta(), "type": "Opaque", "data": encoded}

    def _probes(self, port: str, tls: bool = False) -> dict[str, Any]:
        probe = {"httpGet": {"path": heartbeat_path(self.settings.image), "port": port,
                             **({"scheme": "HTTPS"} if tls else {})}}
        return {"readinessProbe": {**probe, "periodSeconds": 5, "failureThreshold": 3},
                "livenessProbe": {**probe, "initialDelaySeconds": 30, "periodSeconds": 10, "failureThreshold": 6}}

    def chroma_container(self, environment: dict[str, str], env_keys: dict[str, str],
                         behind_gateway: bool, tls: bool = False) -> dict[str, Any]:
        if behind_gateway:  # Chroma listens on the pod's loopback only: kubelet's HTTP probes cannot reach it
            script = _HEALTH_SCRIPT.format(port=CONTAINER_PORT, path=heartbeat_path(self.settings.image))
            probe = {"exec": {"command": ["bash", "-c", script]}}
            probes = {"readinessProbe": {**probe, "periodSeconds": 5, "failureThreshold": 3},
                      "livenessProbe": {**probe, "initialDelaySeconds": 30, "periodSeconds": 10, "failureThreshold": 6}}
        else:
            probes = self._probes("http", tls)
        loopback = {}
        if behind_gateway:  # listen on the pod's loopback only: the gateway sidecar is the way in
            if _is_0x(self.settings.image):
                loopback = {"env_extra": [{"name": "CHROMA_HOST_ADDR", "value": "127.0.0.1"}]}
            else:  # the image's `chroma` entrypoint, told where to listen (the upstream shapes all end in `chroma`)
                loopback = {"args": ["run", "--host", "127.0.0.1", "--port", str(CONTAINER_PORT),
                                     "--path", self.data_path]}
        container = {
            "name": "chroma",
            "image": self.settings.image,
            **({"args": loopback["args"]} if "args" in loopback else {}),
            "ports": [] if behind_gateway else [{"name": "http", "containerPort": CONTAINER_PORT}],
            "env": [{"name": key, "valueFrom": {"secretKeyRef": {"name": self.name, "key": env_keys[key]}}}
                    for key in environment] + loopback.get("env_extra", []),
            "volumeMounts": [{"name": "data", "mountPath": self.data_path}],
            **probes,
            "securityContext": {"allowPrivilegeEscalation": False, "privileged": False,
                                "capabilities": {"drop": ["ALL"]}},
        }
        if not container["ports"]:
            del container["ports"]
        return container

    def pod_spec(self, container: dict[str, Any], files: dict[str, bytes]) -> dict[str, Any]:
        pod_spec: dict[str, Any] = {
            "automountServiceAccountToken": False,
            "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [container],
        }
        if files:
            container["volumeMounts"].append({"name": "credentials", "mountPath": MOUNT_DIR, "readOnly": True})
            pod_spec["volumes"] = [{"name": "credentials", "secret": {
                "secretName": self.name, "defaultMode": 0o400,
                "items": [{"key": key, "path": key} for key in sorted(files)]}}]
        return pod_spec

    def add_native_tls(self, pod_spec: dict[str, Any], chroma: dict[str, Any]) -> None:
        """Chroma 0.x serving TLS itself: uvicorn's options after the image's entrypoint."""
        chroma["args"] = list(tls_command(None, f"{TLS_IN_CONTAINER}/server.key", f"{TLS_IN_CONTAINER}/server.pem"))
        chroma["volumeMounts"].append({"name": "tls", "mountPath": TLS_IN_CONTAINER, "readOnly": True})
        pod_spec.setdefault("volumes", []).append({"name": "tls", "secret": {
            "secretName": self.name, "defaultMode": 0o400,
            "items": [{"key": "tls.crt", "path": "server.pem"}, {"key": "tls.key", "path": "server.key"}]}})

    def add_gateway(self, pod_spec: dict[str, Any], gateway_keys: dict[str, str], tls: bool = False) -> None:
        """The gateway as a sidecar in Chroma's pod, its files from the Secret."""
        pod_spec["securityContext"]["fsGroup"] = gateway.UNPRIVILEGED_ID  # the gateway's user reads its files
        items = [{"key": key, "path": file} for file, key in gateway_keys.items()
                 if file not in (gateway.TLS_CERT_FILE, gateway.TLS_KEY_FILE)]
        if tls:
            items += [{"key": "tls.crt", "path": gateway.TLS_CERT_FILE}, {"key": "tls.key", "path": gateway.TLS_KEY_FILE}]
        pod_spec.setdefault("volumes", []).append({"name": "gateway", "secret": {
            "secretName": self.name, "defaultMode": 0o440, "items": items}})
        pod_spec["containers"].append({
            "name": "gateway",
            "image": self.settings.gateway_image,
            "command": list(gateway.COMMAND),
            "ports": [{"name": "gateway", "containerPort": GATEWAY_POD_PORT}],
            "volumeMounts": [{"name": "gateway", "mountPath": gateway.MOUNT_DIR, "readOnly": True}],
            **self._probes("gateway", tls),
            "securityContext": {"allowPrivilegeEscalation": False, "privileged": False,
                                "runAsNonRoot": True, "runAsUser": gateway.UNPRIVILEGED_ID,
                                "runAsGroup": gateway.UNPRIVILEGED_ID, "capabilities": {"drop": ["ALL"]}},
        })

    def network_policy(self) -> dict[str, Any]:
        """Only the gateway's port is admitted: defence in depth, since Chroma listens on the
        pod's loopback anyway and many clusters do not enforce policies."""
        return {
            "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": self.meta(),
            "spec": {"podSelector": {"matchLabels": dict(self.labels)}, "policyTypes": ["Ingress"],
                     "ingress": [{"ports": [{"protocol": "TCP", "port": GATEWAY_POD_PORT}]}]},
        }

    def statefulset(self, pod_spec: dict[str, Any], storage: str) -> dict[str, Any]:
        return {
            "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": self.meta(),
            "spec": {
                "replicas": 1,
                "serviceName": self.name,
                "selector": {"matchLabels": dict(self.labels)},
                "template": {"metadata": {"labels": dict(self.labels)}, "spec": pod_spec},
                "volumeClaimTemplates": [{
                    "metadata": {"name": "data", "labels": dict(self.labels)},
                    "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": storage}}},
                }],
            },
        }

    def service(self, via_gateway: bool) -> dict[str, Any]:
        return {
            "apiVersion": "v1", "kind": "Service", "metadata": self.meta(),
            "spec": {"selector": dict(self.labels), "ports": [{
                "name": "http", "port": CONTAINER_PORT, "targetPort": "gateway" if via_gateway else "http"}]},
        }
