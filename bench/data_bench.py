"""Benchmark `chromactl backup` and `restore` on a volume of a few hundred MB.

Makes a project (Chroma 1.5.9 behind the gateway by default), fills it with ROWS records of
DIM dimensions through Chroma's real client, then measures:
  a) `chromactl backup`: seconds, MB/s of the data, and the downtime it causes, both as
     chromactl reports it (stop to proven heartbeat) and as a client sees it (the longest
     run of failed heartbeats, polled every 50 ms through the published port);
  b) `chromactl restore` of that backup: seconds and MB/s.

Needs the engine, the local test images and a python with chromadb 1.x (or 0.6 for a 0.6
image): python bench/data_bench.py --client-python PY [--rows N] [--dim D] [--image IMAGE]
Everything it creates is removed at the end; all traffic stays on loopback.
"""

from __future__ import annotations

import argparse
import json
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import yaml

HELPER = Path(__file__).resolve().parents[1] / "tests" / "helpers" / "chroma_client.py"
MB = 1024 * 1024


sys.path.insert(0, str(Path(__file__).resolve().parent))
from up_bench import chromactl, free_port  # noqa: E402  (the same helpers as the up benchmark)


class Outage(threading.Thread):
    """Polls the heartbeat; `longest` is the longest run of failures, in seconds."""

    def __init__(self, url: str):
        super().__init__(daemon=True)
        self.url, self.stop, self.longest = url + "/api/v2/heartbeat", threading.Event(), 0.0

    def run(self) -> None:
        down_since = None
        while not self.stop.is_set():
            now = time.monotonic()
            try:
                with urllib.request.urlopen(self.url, timeout=1) as response:
                    good = response.status == 200
            except OSError:
                good = False
            if good and down_since is not None:
                self.longest, down_since = max(self.longest, now - down_since), None
            elif not good and down_since is None:
                down_since = now
            time.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--client-python", required=True)
    parser.add_argument("--rows", type=int, default=80000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--image", default="chromactl-test/chroma:1.5.9")
    parser.add_argument("--gateway-image", default="chromactl-test/nginx:bookworm")
    args = parser.parse_args()

    base = Path(tempfile.mkdtemp(prefix="chromactl-data-bench-"))
    name = "dbench" + secrets.token_hex(3)
    folder, port = base / name, free_port()
    chromactl(folder, "init", "--name", name, "--image", args.image, "--gateway-image", args.gateway_image,
              "--host", "127.0.0.1", "--port", str(port))
    try:
        chromactl(folder, "up")
        users = yaml.safe_load((folder / "authz.yaml").read_text())["users"]
        token = next(u for u in users if u["id"] == "admin")["tokens"][0]
        url = f"http://127.0.0.1:{port}"
        started = time.perf_counter()
        request = {"url": url, "auth": "token", "credentials": token, "collection": "bench", "ops": ["connect", "fill"],
                   "rows": args.rows, "dim": args.dim, "batch": 2000}
        filled = subprocess.run([args.client_python, str(HELPER)], input=json.dumps(request), capture_output=True,
                                text=True)
        if filled.returncode != 0 or json.loads(filled.stdout).get("fill") != "ok":
            raise SystemExit(f"fill failed: {filled.stdout} {filled.stderr[-2000:]}")
        print(f"filled {args.rows} x {args.dim} in {time.perf_counter() - started:.1f} s", file=sys.stderr)

        outage = Outage(url)
        outage.start()
        time.sleep(0.5)
        backup = json.loads(chromactl(folder, "backup", "-o", str(base / "b.tar"), "--json").stdout)
        time.sleep(0.5)
        outage.stop.set()
        outage.join()
        data = backup["manifest"]["payload"]["bytes"]
        started = time.perf_counter()
        restore = json.loads(chromactl(folder, "restore", str(base / "b.tar"), "--yes", "--json").stdout)
        restore_seconds = time.perf_counter() - started
        print(json.dumps({
            "image": args.image, "records": backup["manifest"]["records"], "data_mb": round(data / MB, 1),
            "backup_seconds": round(backup["seconds"], 2), "backup_mb_per_s": round(data / MB / backup["seconds"], 1),
            "downtime_reported_s": backup["downtime_seconds"], "downtime_seen_by_client_s": round(outage.longest, 2),
            "restore_seconds": round(restore_seconds, 2), "restore_mb_per_s": round(data / MB / restore_seconds, 1),
            "restore_verified": restore["verified"]}, indent=2))
    finally:
        subprocess.run([sys.executable, "-m", "chromactl", "-C", str(folder), "down"], capture_output=True)
        listed = subprocess.run(["docker", "volume", "ls", "-q", "--filter", f"name=chromactl-{name}-data"],
                                capture_output=True, text=True).stdout.split()
        for volume in listed:
            subprocess.run(["docker", "volume", "rm", "-f", volume], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
