"""Engine faults that a real engine cannot be made to produce on demand, played by a
stand-in: a minimal Docker API server that answers the few calls `chromactl logs -f`
makes, then goes away in the middle of the log stream, either quietly (its unix socket
closes and disappears) or with a TCP reset. (Losing the real engine entirely is covered
by test_lifecycle.py::test_engine_restart, under CI.)"""

import json
import os
import socket
import struct
import socketserver
import threading
import time
from http.server import BaseHTTPRequestHandler

import pytest

from conftest import ok, run_chromactl


class _FakeEngine(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    project = ""
    socket_path = None  # a unix socket: removed when the stream is cut, so the engine is gone
    gone = False  # once the stream is cut, every connection is dropped unanswered

    def setup(self):
        super().setup()
        type(self).connections.append(self.connection)

    def handle_one_request(self):
        if type(self).gone:
            self.close_connection = True
            return
        super().handle_one_request()

    def log_message(self, *args):  # quiet
        pass

    def _json(self, document, status=200):
        body = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Api-Version", "1.41")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        path = self.path.split("?")[0]
        if path.endswith("/_ping"):
            body = b"OK"
            self.send_response(200)
            self.send_header("Api-Version", "1.41")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(body)
        elif path.endswith("/version"):
            self._json({"ApiVersion": "1.41", "Version": "20.10.24", "MinAPIVersion": "1.12"})
        elif path.endswith("/json") and "/containers/" in path:
            name = path.split("/containers/")[1].split("/")[0]
            self._json({"Id": "f" * 64, "Name": "/" + name, "State": {"Status": "running", "StartedAt": ""},
                        "Config": {"Image": "x", "Tty": False, "Labels": {"org.chromactl.project": self.project}},
                        "HostConfig": {}, "Mounts": [], "RestartCount": 0})
        elif path.endswith("/logs"):
            self.send_response(200)
            self.send_header("Content-Type", "application/vnd.docker.multiplexed-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            line = b"line one\n"
            frame = b"\x01\x00\x00\x00" + len(line).to_bytes(4, "big") + line  # stdout, as Chroma's non-tty log
            half = b"\x01\x00\x00\x00" + (100).to_bytes(4, "big") + b"line tw"  # cut inside a frame
            for data in (frame, half):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()
            # The engine goes away mid-stream, and with it every connection to it.
            type(self).gone = True
            time.sleep(0.3)  # the client reads what was sent before the connection breaks
            if self.socket_path:
                os.unlink(self.socket_path)
            for connection in type(self).connections:
                if not self.socket_path:  # TCP: a reset
                    connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                try:
                    connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                if connection is not self.connection:  # socketserver closes this one
                    connection.close()
            self.close_connection = True
        else:
            self._json({"message": f"no such route {path}"}, 404)


@pytest.fixture(params=["unix", "tcp"])
def fake_engine(request, tmp_path):
    if request.param == "unix":
        path = tmp_path / "docker.sock"

        class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
            daemon_threads = True

        server = Server(str(path), type("Handler", (_FakeEngine,), {"socket_path": str(path), "gone": False, "connections": []}))
        address = f"unix://{path}"
    else:
        class Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
            daemon_threads = True

        server = Server(("127.0.0.1", 0), type("Handler", (_FakeEngine,), {"gone": False, "connections": []}))
        address = f"tcp://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield address
    server.shutdown()
    server.server_close()


def test_logs_follow_reports_an_engine_lost_mid_stream(chromactl, fake_engine):
    ok(chromactl("init", "--auth", "none", "--image", "chromadb/chroma:0.6.3"))
    _FakeEngine.project = str(chromactl.project)  # the container's owner, as its label says
    result = run_chromactl("logs", "-f", cwd=chromactl.project, env={"DOCKER_HOST": fake_engine})
    if fake_engine.startswith("unix"):  # a reset may discard what was in flight
        assert "line one" in result.stdout
    assert result.returncode == 3, result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert f"engine at {fake_engine}" in result.stderr, result.stderr  # the address it tried
