"""Benchmark chromactl's container lifecycle against plain Docker, on this machine.

  a) `chromactl up` from a new container to a verified server (image present), against
  b) plain `docker run` of the same image and settings plus a tight heartbeat poll,
     alternating a and b in one run;
  c) a no-op `chromactl up` on a running instance;
  d) `chromactl status --all` over 10 instances, against over 1.

Prints medians and ratios. Needs the Docker engine and the local test image
(bash ci/chroma-images.sh). Usage: python bench/up_bench.py [--rounds N] [--image IMAGE]
Everything it creates is labelled and removed at the end; all traffic stays on loopback.
"""

from __future__ import annotations

import argparse
import json
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path


def chromactl(folder: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "chromactl", "-C", str(folder), *args], capture_output=True,
                            text=True, stdin=subprocess.DEVNULL)
    if check and result.returncode != 0:
        raise SystemExit(f"chromactl {' '.join(args)} failed: {result.stderr}")
    return result


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def timed(action) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def new_project(base: Path, image: str) -> Path:
    name = "bench" + secrets.token_hex(3)
    folder = base / name
    chromactl(folder, "init", "--name", name, "--image", image, "--host", "127.0.0.1", "--port", str(free_port()))
    return folder


def docker_run_and_poll(folder: Path, image: str) -> None:
    """What an operator would do by hand: the same container, then poll the heartbeat."""
    settings = json.loads(chromactl(folder, "up", "--dry-run", "--json").stdout)
    command = settings["commands"][-1].replace("--name chromactl-", "--name plain-", 1)
    command = command.replace(f"chromactl-{folder.name}-data", f"plain-{folder.name}-data")
    port = int(command.split("--publish 127.0.0.1:")[1].split(":")[0])
    subprocess.run(command, shell=True, check=True, capture_output=True)
    url = f"http://127.0.0.1:{port}/api/v2/heartbeat"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.01)
    raise SystemExit("plain docker run: no heartbeat within 120 s")


def remove_plain(folder: Path) -> None:
    subprocess.run(["docker", "rm", "-f", f"plain-{folder.name}"], capture_output=True)


def cleanup(folders: list[Path]) -> None:
    for folder in folders:
        chromactl(folder, "down", "--volumes", "--yes", check=False)
        remove_plain(folder)
        subprocess.run(["docker", "volume", "rm", "-f", f"plain-{folder.name}-data"], capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--image", default="chromactl-test/chroma:0.6.3")
    options = parser.parse_args()
    if shutil.which("docker") is None:
        raise SystemExit("the docker CLI is needed for the plain `docker run` side")

    base = Path(tempfile.mkdtemp(prefix="chromactl-bench-"))
    folders: list[Path] = []
    try:
        project = new_project(base, options.image)
        folders.append(project)
        chromactl(project, "up")  # warm: volume created, image cached
        chromactl(project, "down")
        up_times, plain_times = [], []
        for _ in range(options.rounds):
            up_times.append(timed(lambda: chromactl(project, "up")))
            chromactl(project, "down")
            plain_times.append(timed(lambda: docker_run_and_poll(project, options.image)))
            remove_plain(project)

        chromactl(project, "up")
        noop_times = [timed(lambda: chromactl(project, "up")) for _ in range(options.rounds)]

        status_one = [timed(lambda: chromactl(project, "status", "--all")) for _ in range(options.rounds)]
        for _ in range(9):
            folder = new_project(base, options.image)
            folders.append(folder)
            chromactl(folder, "up")
        status_ten = [timed(lambda: chromactl(project, "status", "--all")) for _ in range(options.rounds)]

        a, b = statistics.median(up_times), statistics.median(plain_times)
        noop = statistics.median(noop_times)
        s1, s10 = statistics.median(status_one), statistics.median(status_ten)
        print(f"rounds: {options.rounds}, image: {options.image}")
        print(f"(a) chromactl up, new container to verified server: median {a:.3f} s")
        print(f"(b) docker run + heartbeat poll:                      median {b:.3f} s")
        print(f"    ratio a/b: {a / b:.3f} (target <= 1.15)")
        print(f"(c) no-op chromactl up on a running instance:         median {noop:.3f} s (target < 1 s)")
        print(f"(d) status --all, 1 instance:                        median {s1:.3f} s")
        print(f"    status --all, 10 instances:                      median {s10:.3f} s")
        print(f"    ratio 10/1: {s10 / s1:.3f} (target <= 2)")
    finally:
        cleanup(folders)
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
