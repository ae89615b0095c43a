"""The project as a Compose file or as Kubernetes manifests. Pure: the caller loads the
project and reads the files; these functions return text."""

from __future__ import annotations

import base64
import os
from typing import Any

import yaml

from chromactl.envfile import MOUNT_DIR, ENV_FILE
from chromactl.images import data_path, tag_version
from chromactl.project import Project
from chromactl.spec import CONTAINER_PORT, container_name, volume_name

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


def render_compose(project: Project, credential_files: list[str], base_dir: str) -> str:
    """A Compose file; paths are relative to `base_dir`, the folder the file is used from."""
    s = project.settings
    relative = os.path.relpath(project.root, base_dir)

    def path(name: str) -> str:
        joined = os.path.normpath(os.path.join(relative, name))
        return joined if joined.startswith(("/", ".")) else "./" + joined

    host = f"[{s.host}]" if ":" in s.host else s.host
    volumes = [f"{path(name)}:{MOUNT_DIR}/{name}:ro" for name in credential_files]
    volumes.append(f"data:{data_path(s.image)}")
    service = {
        "image": s.image,
        "env_file": [path(ENV_FILE)],
        "volumes": volumes,
        "ports": [f"{host}:{s.port}:{CONTAINER_PORT}"],
        "restart": "unless-stopped",
        "labels": {"org.chromactl.project": str(project.root), "org.chromactl.name": s.name},
        "healthcheck": {
            "test": ["CMD", "bash", "-c", _HEALTH_SCRIPT.format(port=CONTAINER_PORT, path=heartbeat_path(s.image))],
            "interval": "10s",
            "timeout": "5s",
            "retries": 5,
            "start_period": "30s",
        },
    }
    document = {
        "version": "3.8",  # read by Compose v1 (Debian's docker-compose); Compose v2 ignores it
        "services": {"chroma": service},
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
                      namespace: str | None = None, storage: str = "10Gi") -> str:
    """A Secret (credential files and env settings), a StatefulSet and a Service.
    Secrets live only in the Secret: the pod spec references them by key, so re-exporting
    after `creds add` changes the Secret and nothing else."""
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
    secret_data = {key: base64.b64encode(content).decode() for key, content in sorted(files.items())}
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
        "spec": {"selector": dict(labels), "ports": [{"name": "http", "port": CONTAINER_PORT, "targetPort": "http"}]},
    }
    header = (
        f"# Kubernetes manifests for chromactl project {s.name!r}, written by `chromactl export kubernetes`.\n"
        "# The Secret holds the credential files and the server's settings; apply it only to a\n"
        "# namespace you trust. Chroma reads credentials at start: after changing users, apply and then\n"
        f"# `kubectl rollout restart statefulset/{name}`.\n"
    )
    return _dump([secret, statefulset, service], header)
