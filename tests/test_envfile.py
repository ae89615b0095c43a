import io

import pytest
from dotenv import dotenv_values

from chromactl.envfile import parse_env_file, render_env_file, server_environment
from chromactl.errors import ProjectFileError
from chromactl.settings import resolve_settings

MODES = [
    {"auth": "token"},
    {"auth": "token", "token_header": "X-Chroma-Token"},
    {"auth": "token", "rbac": False},
    {"auth": "basic"},
    {"auth": "basic", "rbac": False},
    {"auth": "none"},
]


@pytest.mark.parametrize("given", MODES)
def test_docker_and_dotenv_read_the_same_values(given):
    settings = resolve_settings(given, None, folder_name="p")
    text = render_env_file(settings)
    as_docker = parse_env_file(text)
    assert as_docker == server_environment(settings)
    assert dict(dotenv_values(stream=io.StringIO(text))) == as_docker
    for value in as_docker.values():
        assert not any(c in value for c in "\"'$# \t")


def test_variables_by_mode():
    native = {"image": "chromadb/chroma:0.6.3"}  # Chroma's own auth; 1.x gets the gateway
    token = server_environment(resolve_settings({**native, "token_header": "X-Chroma-Token"}, None, folder_name="p"))
    assert token["CHROMA_SERVER_AUTHN_PROVIDER"] == "chromadb.auth.token_authn.TokenAuthenticationServerProvider"
    assert token["CHROMA_SERVER_AUTHN_CREDENTIALS_FILE"] == token["CHROMA_SERVER_AUTHZ_CONFIG_FILE"] == "/etc/chromactl/authz.yaml"
    assert token["CHROMA_SERVER_AUTHZ_PROVIDER"] == "chromadb.auth.simple_rbac_authz.SimpleRBACAuthorizationProvider"
    assert token["CHROMA_AUTH_TOKEN_TRANSPORT_HEADER"] == "X-Chroma-Token"
    assert "CHROMA_SERVER_AUTHN_CREDENTIALS" not in token

    basic = server_environment(resolve_settings({**native, "auth": "basic"}, None, folder_name="p"))
    assert basic["CHROMA_SERVER_AUTHN_PROVIDER"] == "chromadb.auth.basic_authn.BasicAuthenticationServerProvider"
    assert basic["CHROMA_SERVER_AUTHN_CREDENTIALS_FILE"] == "/etc/chromactl/server.htpasswd"
    assert basic["CHROMA_SERVER_AUTHZ_CONFIG_FILE"] == "/etc/chromactl/authz.yaml"
    assert "CHROMA_AUTH_TOKEN_TRANSPORT_HEADER" not in basic

    plain = server_environment(resolve_settings({"auth": "basic", "rbac": False}, None, folder_name="p"))
    assert "CHROMA_SERVER_AUTHZ_PROVIDER" not in plain
    none = server_environment(resolve_settings({"auth": "none"}, None, folder_name="p"))
    assert not any(key.startswith("CHROMA_SERVER_AUTH") for key in none)


def test_env_file_parsing_follows_docker():
    text = "# comment\n  # indented comment\n\nA=1\nB=\"quoted\"\nC=x=y\nD=\nE=  spaced \n"
    assert parse_env_file(text) == {"A": "1", "B": '"quoted"', "C": "x=y", "D": "", "E": "  spaced "}


@pytest.mark.parametrize("text, line", [("A=1\nBARE\n", 2), ("A B=1\n", 1), ("=1\n", 1)])
def test_env_file_errors_name_the_line(text, line):
    with pytest.raises(ProjectFileError) as caught:
        parse_env_file(text)
    assert caught.value.line == line
