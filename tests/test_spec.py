"""spec: the container as data, and the docker run it amounts to."""

import shlex

from chromactl.settings import resolve_settings
from chromactl.spec import LABEL_CONFIG, LABEL_PROJECT, build_spec, docker_run_command, probe_host, url_for


def settings(**given):
    return resolve_settings(given, None, folder_name="proj")


def test_a_changed_file_image_or_setting_changes_the_config_hash():
    s = settings(image="chromadb/chroma:0.6.3")
    base = build_spec("/p", s, {"A": "1"}, {"authz.yaml": b"x"}, "sha256:1", "/chroma/chroma")
    same = build_spec("/p", s, {"A": "1"}, {"authz.yaml": b"x"}, "sha256:1", "/chroma/chroma")
    assert base.config_hash == same.config_hash and base.labels[LABEL_PROJECT] == "/p"
    for other in (build_spec("/p", s, {"A": "1"}, {"authz.yaml": b"y"}, "sha256:1", "/chroma/chroma"),
                  build_spec("/p", s, {"A": "1"}, {"authz.yaml": b"x"}, "sha256:2", "/chroma/chroma"),
                  build_spec("/p", s, {"A": "2"}, {"authz.yaml": b"x"}, "sha256:1", "/chroma/chroma"),
                  build_spec("/p", settings(image="chromadb/chroma:0.6.3", port=9000), {"A": "1"},
                             {"authz.yaml": b"x"}, "sha256:1", "/chroma/chroma")):
        assert other.labels[LABEL_CONFIG] != base.config_hash


def test_docker_run_keeps_secrets_in_files():
    s = settings(image="chromadb/chroma:0.6.3", host="127.0.0.1", port=8001)
    spec = build_spec("/p", s, {"SECRET": "hunter2"}, {"authz.yaml": b"tok3n-in-file"}, "sha256:1", "/chroma/chroma",
                      config_volume="chromactl-proj-config")
    command = shlex.split(docker_run_command(spec, "/p/.chroma_env"))
    assert "hunter2" not in " ".join(command) and "tok3n" not in " ".join(command)
    assert command[command.index("--env-file") + 1] == "/p/.chroma_env"
    assert command[command.index("--publish") + 1] == "127.0.0.1:8001:8000"
    # The credential files reach the container in its config volume (filled by chromactl through
    # the engine), never on the command line.
    assert "chromactl-proj-config:/etc/chromactl:ro" in command


def test_urls_for_wildcard_and_ipv6_addresses():
    assert probe_host("0.0.0.0") == "127.0.0.1" and probe_host("::") == "::1"
    assert url_for("::1", 8000) == "http://[::1]:8000" and url_for("0.0.0.0", 80) == "http://127.0.0.1:80"
