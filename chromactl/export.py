"""The project as a Compose file or as Kubernetes manifests. Pure: the caller loads the
project and reads the files; these functions return text."""

from __future__ import annotations

import base64
import os
from typing import Any

import yaml

from chromactl.envfile import ENV_FILE, MOUNT_DIR
from chromactl.gateway import WORKER_GID
from chromactl.images import data_path, tag_version
from chromactl.plan import GATEWAY_DIR
from chromactl.project import Project
from chromactl.spec import CONTAINER_PORT, GATEWAY_MOUNT_DIR, container_name, volume_name

# In a pod, Chroma keeps 8000 and the gateway sidecar listens here.
GATEWAY_POD_PORT = 8080

# A heartbeat check that needs only bash: Chroma 1.x images have neither curl nor Python.
# HTTP/1.1: Chroma's server answers an HTTP/1.0 request with 400.
_HEALTH_SCRIPT = (
    "exec 3<>/dev/tcp/127.0.0.1/{port} && "
    "printf 'GET {path} HTTP/1.1\\r\\nHost: localhost\\r\\nConnection: close\\r\\n\\r\\n' >&3 && "
    "head -n 1 <&3 | grep -q ' 200 '"
)


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


def _healthcheck(image: str) -> dict[str, Any]:
    return {
        "test": ["CMD", "bash", "-c", _HEALTH_SCRIPT.format(port=CONTAINER_PORT, path=heartbeat_path(image))],
        "interval": "10s",
        "timeout": "5s",
        "retries": 5,
        "start_period": "30s",
    }


def render_compose(project: Project, credential_files: list[str], base_dir: str,
                   gateway_dir: str = GATEWAY_DIR) -> str:
    """A Compose file; paths are relative to `base_dir`, the folder the file is used from.
    With a gateway, Chroma publishes nothing and the gateway service fronts it."""
    s = project.settings
    relative = os.path.relpath(project.root, base_dir)

    def path(name: str) -> str:
        joined = os.path.normpath(os.path.join(relative, name))
        return joined if joined.startswith(("/", "./", "../")) else "./" + joined

    host = f"[{s.host}]" if ":" in s.host else s.host
    published = [f"{host}:{s.port}:{CONTAINER_PORT}"]
    labels = {"org.chromactl.project": str(project.root), "org.chromactl.name": s.name}
    volumes = [f"{path(name)}:{MOUNT_DIR}/{name}:ro" for name in credential_files]
    volumes.append(f"data:{data_path(s.image)}")
    chroma: dict[str, Any] = {
        "image": s.image,
        "env_file": [path(ENV_FILE)],
        "volumes": volumes,
        "restart": "unless-stopped",
        "labels": labels,
        "healthcheck": _healthcheck(s.image),
    }
    services: dict[str, Any] = {"chroma": chroma}
    if s.uses_gateway:
        # The gateway's nginx.conf names Chroma by its container name.
        chroma["networks"] = {"default": {"aliases": [container_name(s)]}}
        services["gateway"] = {
            "image": s.gateway_image,
            "command": ["nginx", "-c", f"{GATEWAY_MOUNT_DIR}/nginx.conf", "-g", "daemon off;"],
            "volumes": [f"{path(gateway_dir)}:{GATEWAY_MOUNT_DIR}:ro"],
            "ports": published,
            "depends_on": ["chroma"],
            "restart": "unless-stopped",
            "labels": labels,
            "healthcheck": _healthcheck(s.image),
        }
    else:
        chroma["ports"] = published
    document = {
        "version": "3.8",  # read by Compose v1 (Debian's docker-compose); Compose v2 ignores it
        "services": services,
        "volumes": {"data": {"name": volume_name(s)}},
    }
    header = (
        f"# Compose file for chromactl project {s.name!r}, written by `chromactl export compose`.\n"
        f"# Secrets stay in the files it mounts. Relative paths are from {os.path.abspath(base_dir)}.\n"
        f"# The data volume is {volume_name(s)}, the one `chromactl up` uses: stop that container first\n"
        f"# (`chromactl down`) so that one server at a time owns the data.\n"
    )
    return _dump([_escape_dollars(document)], header)


def render_kubernetes(project: Project, environment: dict[str, str], files: dict[str, bytes],
                      namespace: str | None = None, storage: str = "10Gi",
                      gateway_files: dict[str, bytes] | None = None) -> str:
    """A Secret (credential files and env settings), a StatefulSet and a Service.
    Secrets live only in the Secret: the pod spec references them by key, so re-exporting
    after `creds add` changes the Secret and nothing else.

    With a gateway (its files rendered for a sidecar: listening on GATEWAY_POD_PORT, Chroma
    on 127.0.0.1), the Service and a NetworkPolicy admit traffic to the gateway's port only."""
    s = project.settings
    name = container_name(s)
    labels = {"app.kubernetes.io/name": "chroma", "app.kubernetes.io/instance": s.name,
              "app.kubernetes.io/managed-by": "chromactl"}

    def meta(kind_name: str) -> dict[str, Any]:
        m: dict[str, Any] = {"name": kind_name, "labels": dict(labels)}
        if namespace:
            m["namespace"] = namespace
        return m

    env_keys = {key: f"env.{key}" for key in environment}
    gateway_keys = {name: f"gateway.{name}" for name in sorted(gateway_files or {})}
    secret_data = {key: base64.b64encode(content).decode() for key, content in sorted(files.items())}
    secret_data.update({gateway_keys[name]: base64.b64encode(content).decode()
                        for name, content in sorted((gateway_files or {}).items())})
    secret_data.update({env_keys[key]: base64.b64encode(value.encode()).decode() for key, value in environment.items()})
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": meta(name), "type": "Opaque", "data": secret_data}

    probe = {"httpGet": {"path": heartbeat_path(s.image), "port": "http"}}
    container: dict[str, Any] = {
        "name": "chroma",
        "image": s.image,
        "ports": [{"name": "http", "containerPort": CONTAINER_PORT}],
        "env": [{"name": key, "valueFrom": {"secretKeyRef": {"name": name, "key": env_keys[key]}}}
                for key in environment],
        "volumeMounts": [{"name": "data", "mountPath": data_path(s.image)}],
        "readinessProbe": {**probe, "periodSeconds": 5, "failureThreshold": 3},
        "livenessProbe": {**probe, "initialDelaySeconds": 30, "periodSeconds": 10, "failureThreshold": 6},
        "securityContext": {"allowPrivilegeEscalation": False, "privileged": False,
                            "capabilities": {"drop": ["ALL"]}},
    }
    pod_spec: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [container],
    }
    if files:
        container["volumeMounts"].append({"name": "credentials", "mountPath": MOUNT_DIR, "readOnly": True})
        pod_spec["volumes"] = [{"name": "credentials", "secret": {
            "secretName": name, "defaultMode": 0o400,
            "items": [{"key": key, "path": key} for key in sorted(files)]}}]
    extra: list[dict[str, Any]] = []
    if gateway_files:
        pod_spec["securityContext"]["fsGroup"] = WORKER_GID  # nginx's workers read the password hashes
        pod_spec.setdefault("volumes", []).append({"name": "gateway", "secret": {
            "secretName": name, "defaultMode": 0o440,
            "items": [{"key": key, "path": file} for file, key in gateway_keys.items()]}})
        gateway_probe = {"httpGet": {"path": heartbeat_path(s.image), "port": "gateway"}}
        pod_spec["containers"].append({
            "name": "gateway",
            "image": s.gateway_image,
            "command": ["nginx", "-c", f"{GATEWAY_MOUNT_DIR}/nginx.conf", "-g", "daemon off;"],
            "ports": [{"name": "gateway", "containerPort": GATEWAY_POD_PORT}],
            "volumeMounts": [{"name": "gateway", "mountPath": GATEWAY_MOUNT_DIR, "readOnly": True}],
            "readinessProbe": {**gateway_probe, "periodSeconds": 5, "failureThreshold": 3},
            "livenessProbe": {**gateway_probe, "initialDelaySeconds": 30, "periodSeconds": 10, "failureThreshold": 6},
            "securityContext": {"allowPrivilegeEscalation": False, "privileged": False,
                                "capabilities": {"drop": ["ALL"], "add": ["CHOWN", "SETGID", "SETUID"]}},
        })
        # Chroma's own port stays inside the pod: only the gateway's is admitted.
        extra.append({
            "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": meta(name),
            "spec": {"podSelector": {"matchLabels": dict(labels)}, "policyTypes": ["Ingress"],
                     "ingress": [{"ports": [{"protocol": "TCP", "port": GATEWAY_POD_PORT}]}]},
        })
    statefulset = {
        "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": meta(name),
        "spec": {
            "replicas": 1,
            "serviceName": name,
            "selector": {"matchLabels": dict(labels)},
            "template": {"metadata": {"labels": dict(labels)}, "spec": pod_spec},
            "volumeClaimTemplates": [{
                "metadata": {"name": "data", "labels": dict(labels)},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": storage}}},
            }],
        },
    }
    service = {
        "apiVersion": "v1", "kind": "Service", "metadata": meta(name),
        "spec": {"selector": dict(labels), "ports": [{
            "name": "http", "port": CONTAINER_PORT, "targetPort": "gateway" if gateway_files else "http"}]},
    }
    header = (
        f"# Kubernetes manifests for chromactl project {s.name!r}, written by `chromactl export kubernetes`.\n"
        "# The Secret holds the credential files and the server's settings; apply it only to a\n"
        "# namespace you trust. Chroma reads credentials at start: after changing users, apply and then\n"
        f"# `kubectl rollout restart statefulset/{name}`.\n"
    )
    return _dump([secret, statefulset, service, *extra], header)
