"""The first hour against the real engine: `status` of real instances in a 100-column terminal
(every line fits, every value whole), its other outputs (-o json is --json, -o env evaluates
to the same values), and the prompts of upgrade and down --volumes declined on a real
terminal: "cancelled", exit 1, no "error", nothing changed."""

from __future__ import annotations

import subprocess

import pytest

from conftest import IMAGE_063, IMAGE_159, instances, ok, up
from test_exit_codes import on_a_terminal

pytestmark = pytest.mark.docker

GATEWAY_IMAGE = "chromactl-test/nginx:bookworm"


def fits(text: str, values: list[str], width: int = 100) -> None:
    """No line past `width` but a value too long for any line, alone on its own; every value whole."""
    lines = text.splitlines()
    for line in lines:
        assert len(line) <= width or line.strip() in values, line
    for value in values:
        assert any(value in line for line in lines), (value, text)


def whole_values(instance: dict) -> list[str]:
    values = [instance["name"], instance["container"], instance["image"], instance["url"], instance["volume"],
              instance["project"], instance["chroma_version"]]
    if instance["gateway"]:
        values.append(instance["gateway"]["container"])
    if instance["tls"]:
        values.append(instance["tls"]["ca"])
    return [v for v in values if v]


def test_status_of_a_real_instance_in_100_columns(projects, docker_client):
    docker_client.images.get(GATEWAY_IMAGE)
    p = projects("--gateway-image", GATEWAY_IMAGE, "--tls", "auto", image=IMAGE_159)
    result, _ = up(p)
    assert result.returncode == 0, result.stderr
    narrow = {"COLUMNS": "100"}

    text = ok(p("status", env=narrow)).stdout
    [doc] = instances(ok(p("status", "--json")))
    fits(text, whole_values(doc))
    assert text.splitlines()[0] == f"{p.name}: running, healthy"
    assert "  version:     1.5.9 (API 1.0.0)\n" in text and "  auth:        token, enforced, by the gateway\n" in text

    # -o json is --json (but for what a second probe measures), -o table every column in one row.
    [same] = instances(ok(p("status", "-o", "json")))
    # Measured afresh each time: the heartbeat's latency, and the last minute's traffic (a
    # request may leave the window between the two runs; status's own probes never count).
    measured = ("heartbeat_ms", "traffic")
    assert {k: v for k, v in same.items() if k not in measured} == {k: v for k, v in doc.items() if k not in measured}
    table = ok(p("status", "--wide", env=narrow)).stdout.splitlines()
    assert table[0].split() == ["NAME", "STATE", "HEALTHY", "HEARTBEAT", "VERSION", "URL", "AUTH", "PENDING", "IMAGE",
                                "VOLUME"]
    assert all(value in table[1] for value in (p.name, doc["url"], doc["image"], doc["volume"]))

    # -o env: what a shell reads back is what --json says.
    env_text = ok(p("status", "-o", "env")).stdout
    script = env_text + 'printf "%s\\n" "$CHROMA_URL" "$CHROMA_CA" "$CHROMA_HEALTHY" "$CHROMA_GATEWAY" "$CHROMA_PROJECT"'
    read = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True).stdout.splitlines()
    assert read == [doc["url"], doc["tls"]["ca"], "true", doc["gateway"]["container"], doc["project"]]

    # Unhealthy: Chroma stopped behind its gateway. The block says what and what to do, still within 100.
    docker_client.containers.get(p.container).stop(timeout=5)
    broken = p("status", env=narrow)
    assert broken.returncode == 4
    fits(broken.stdout, whole_values(doc))
    assert broken.stdout.startswith(f"{p.name}: exited, NOT HEALTHY\n")
    assert "\n  fix:         `chromactl up` starts it again (`chromactl logs` shows why it stopped)\n" in broken.stdout

    # Gone: the containers removed, the project's TLS still says https.
    ok(p("down", "--json"))
    gone = p("status", env=narrow)
    assert gone.returncode == 4 and f"{p.name}: missing, NOT HEALTHY" in gone.stdout
    assert f"  url:         https://127.0.0.1:{p.port}\n" in gone.stdout
    assert "\n  fix:         `chromactl up` creates and starts it\n" in gone.stdout


def test_declining_down_volumes_on_a_terminal(projects, docker_client):
    p = projects(image=IMAGE_063)
    docker_client.volumes.create(p.volume)  # the data volume, as a first `up` would leave it
    code, text = on_a_terminal(["down", "--volumes"], p.folder, "n")
    assert code == 1, text
    assert f"Delete {p.volume} and all the data in them?" in text
    assert text.rstrip().endswith(f"cancelled: {p.volume} kept (take a backup first (chromactl backup), then pass "
                                  "--yes)")
    assert "error" not in text.lower()
    docker_client.volumes.get(p.volume)  # still there
    code, text = on_a_terminal(["down", "--volumes"], p.folder, "y")
    assert code == 0 and f"Deleted volume {p.volume}" in text, text


def test_declining_an_upgrade_on_a_terminal(projects, docker_client):
    docker_client.images.get(GATEWAY_IMAGE)
    p = projects("--gateway-image", GATEWAY_IMAGE, image=IMAGE_063)
    settings = (p.folder / "chromactl.yaml").read_bytes()
    code, text = on_a_terminal(["upgrade", "--image", IMAGE_159], p.folder, "n")
    assert code == 1, text
    assert f"Upgrade {p.name} from {IMAGE_063} to {IMAGE_159}?" in text
    assert text.rstrip().endswith("cancelled: nothing was upgraded (pass --yes to upgrade without asking)")
    assert "error" not in text.lower()
    assert (p.folder / "chromactl.yaml").read_bytes() == settings
    assert not docker_client.containers.list(all=True, filters={"label": f"org.chromactl.project={p.folder}"})
