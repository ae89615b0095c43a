"""The client snippets `chromactl up` prints run as printed, with Chroma's real clients.

For each auth mode (a token in Authorization, a token in X-Chroma-Token, basic, none; TLS on
two of them) one project runs Chroma 1.5.9 behind the gateway. The Python and JavaScript
snippets are cut from `up`'s output exactly as printed (the 4-space indent removed), the
credential goes where the output says (CHROMA_CLIENT_AUTH_CREDENTIALS; NODE_EXTRA_CA_CERTS
for node), one line that lists the collections is appended, and they run under Chroma's
Python client 1.5.9 and its JavaScript client (npm chromadb 3.5.0). A wrong credential
must then fail: the snippets really carry it."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import IMAGE_159, document, ok, require

pytestmark = pytest.mark.docker

GATEWAY_IMAGE = "chromactl-test/nginx:bookworm"
VARIABLE = "CHROMA_CLIENT_AUTH_CREDENTIALS"

MODES = {
    "token-authorization-tls": ("--auth", "token", "--tls", "auto"),
    "token-x-chroma-token": ("--auth", "token", "--token-header", "X-Chroma-Token"),
    "basic-tls": ("--auth", "basic", "--tls", "auto"),
    "none": ("--auth", "none"),
}


def snippets(text: str) -> tuple[str | None, str, str, str | None]:
    """(the line that says where the credential goes, the Python snippet, the JavaScript
    snippet, the CA node is told to trust) from `up`'s output, as printed."""
    lines = text.splitlines()
    told = next((line for line in lines if VARIABLE in line and line.startswith("Set ")), None)
    start = lines.index("Python:")
    js_header = next(i for i, line in enumerate(lines) if line.startswith("JavaScript"))
    python = [line for line in lines[start + 1:js_header]]
    javascript = []
    for line in lines[js_header + 1:]:
        if not line.startswith("    "):
            break
        javascript.append(line)
    assert python and javascript and all(line.startswith("    ") for line in python), text
    ca = re.search(r"NODE_EXTRA_CA_CERTS=(\S+?)\)?:$", lines[js_header])
    return told, "\n".join(l[4:] for l in python), "\n".join(l[4:] for l in javascript), ca[1] if ca else None


@pytest.fixture
def python_1x() -> str:
    python = os.environ.get("CHROMACTL_TEST_CHROMA_1X_PYTHON", "")
    require(bool(python) and Path(python).exists(),
            "CHROMACTL_TEST_CHROMA_1X_PYTHON must name a python with chromadb==1.5.9 (scripts/test sets it up)")
    return python


@pytest.fixture
def node_modules() -> Path:
    folder = os.environ.get("CHROMACTL_TEST_JS_CLIENT_DIR", "")
    require(bool(folder) and (Path(folder) / "node_modules/chromadb").is_dir() and shutil.which("node") is not None,
            "CHROMACTL_TEST_JS_CLIENT_DIR must hold node_modules/chromadb, and node must be on PATH "
            "(scripts/test sets both up)")
    return Path(folder) / "node_modules"


def run_python(python: str, code: str, credential: str | None, folder: Path) -> subprocess.CompletedProcess:
    script = folder / "snippet.py"
    # 0.6 clients list names, 1.x clients collections.
    script.write_text(code + "\nimport json\nprint(json.dumps(sorted(c if isinstance(c, str) else c.name for c in "
                             "client.list_collections())))\n")
    env = {"PATH": os.environ["PATH"], **({VARIABLE: credential} if credential is not None else {})}
    return subprocess.run([python, str(script)], capture_output=True, text=True, timeout=120, env=env, cwd=folder)


def run_node(node_modules: Path, code: str, credential: str | None, ca: str | None,
             folder: Path) -> subprocess.CompletedProcess:
    (folder / "node_modules").symlink_to(node_modules)  # node resolves "chromadb" beside the script
    script = folder / "snippet.mjs"
    script.write_text(code + "\nconsole.log(JSON.stringify((await client.listCollections()).map((c) => c.name).sort()));\n")
    env = {"PATH": os.environ["PATH"], **({VARIABLE: credential} if credential is not None else {}),
           **({"NODE_EXTRA_CA_CERTS": ca} if ca else {})}
    return subprocess.run(["node", str(script)], capture_output=True, text=True, timeout=120, env=env, cwd=folder)


def make_collection(project, credential: str | None, auth: str, name: str, tls: bool) -> None:
    """A collection made through the gateway by the admin, with raw HTTP: what the snippets must list."""
    import base64
    import ssl
    import urllib.request

    headers = {"Content-Type": "application/json"}
    if auth == "basic":
        headers["Authorization"] = "Basic " + base64.b64encode(credential.encode()).decode()
    elif auth == "token-x":
        headers["X-Chroma-Token"] = credential
    elif auth == "token":
        headers["Authorization"] = "Bearer " + credential
    scheme = "https" if tls else "http"
    url = f"{scheme}://127.0.0.1:{project.port}/api/v2/tenants/default_tenant/databases/default_database/collections"
    context = ssl.create_default_context(cafile=str(project.folder / ".chromactl/tls/ca.pem")) if tls else None
    request = urllib.request.Request(url, data=json.dumps({"name": name}).encode(), headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=10, context=context) as response:
        assert response.status == 200


@pytest.mark.parametrize("mode", list(MODES))
def test_printed_snippets_run_as_printed(projects, docker_client, python_1x, node_modules, tmp_path, mode):
    docker_client.images.get(GATEWAY_IMAGE)
    args = MODES[mode]
    auth = args[1]
    tls = "--tls" in args
    p = projects(init=False)
    doc = document(ok(p("init", "--name", p.name, "--image", IMAGE_159, "--gateway-image", GATEWAY_IMAGE,
                        "--host", "127.0.0.1", "--port", str(p.port), "--json", *args)), "init")
    credential = None if auth == "none" else doc["secret"] if auth == "token" else f"admin:{doc['secret']}"
    printed = ok(p("up", "--pull", "never")).stdout
    told, python, javascript, ca = snippets(printed)

    # What the output tells the operator, before running anything.
    if auth == "none":
        assert told is None
    else:
        assert told == f"Set {VARIABLE} to {'a token' if auth == 'token' else 'USER:PASSWORD'} in the client's " \
                       "environment, then:"
    assert (ca is not None) == tls
    if tls:
        assert ca == str(p.folder / ".chromactl/tls/ca.pem") and f'chroma_server_ssl_verify="{ca}"' in python
    assert javascript.startswith('import { ChromaClient } from "chromadb";')
    assert printed.rstrip().splitlines()[-1].startswith("A client cannot connect? `chromactl doctor` tells why")

    collection = f"snippet-{mode}"
    make_collection(p, credential, "token-x" if "X-Chroma-Token" in args else auth, collection, tls)

    for language in ("python", "javascript"):
        folder = tmp_path / language
        folder.mkdir()
        if language == "python":
            result = run_python(python_1x, python, credential, folder)
        else:
            result = run_node(node_modules, javascript, credential, ca, folder)
        assert result.returncode == 0, f"{language} snippet failed:\n{python if language == 'python' else javascript}" \
                                       f"\n{result.stderr[-3000:]}"
        assert json.loads(result.stdout.strip().splitlines()[-1]) == [collection], result.stdout

        if credential is not None:  # the credential is really what lets it in
            wrong = "W" * 40 if auth == "token" else "admin:" + "W" * 24
            folder = tmp_path / f"{language}-wrong"
            folder.mkdir()
            refused = (run_python(python_1x, python, wrong, folder) if language == "python"
                       else run_node(node_modules, javascript, wrong, ca, folder))
            assert refused.returncode != 0 and collection not in refused.stdout, (language, refused.stdout)


def test_the_python_snippet_for_a_native_0x_server_runs_with_the_0x_client(projects, chroma_python, tmp_path):
    """Chroma 0.6.3 enforcing its own auth (no gateway) over TLS: the Python snippet printed for
    it runs under Chroma's 0.6.3 client. (No JavaScript 1.x client is installed here: its
    snippet is checked as text.)"""
    from conftest import IMAGE_063

    p = projects(init=False)
    doc = document(ok(p("init", "--name", p.name, "--image", IMAGE_063, "--host", "127.0.0.1", "--port", str(p.port),
                        "--tls", "auto", "--token-header", "X-Chroma-Token", "--json")), "init")
    told, python, javascript, ca = snippets(ok(p("up", "--pull", "never")).stdout)
    assert told.startswith(f"Set {VARIABLE} to a token") and ca == str(p.folder / ".chromactl/tls/ca.pem")
    assert 'auth: { provider: "token"' in javascript and 'tokenHeaderType: "X_CHROMA_TOKEN"' in javascript
    make_collection(p, doc["secret"], "token-x", "native", tls=True)
    result = run_python(chroma_python, python, doc["secret"], tmp_path)
    assert result.returncode == 0, f"{python}\n{result.stderr[-3000:]}"
    assert json.loads(result.stdout.strip().splitlines()[-1]) == ["native"]
    (tmp_path / "wrong").mkdir()
    assert run_python(chroma_python, python, "W" * 40, tmp_path / "wrong").returncode != 0
