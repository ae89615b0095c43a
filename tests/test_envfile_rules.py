"""The Chroma container's environment: which variables each mode writes, which an operator
may add and keep, and how the file is read back (as `docker run --env-file` does)."""

from __future__ import annotations

import pytest

from chromactl import envfile as ef
from chromactl.errors import ProjectFileError
from chromactl.settings import resolve_settings


def settings(**given):
    return resolve_settings(given, None, folder_name="p")


NATIVE = "chromadb/chroma:0.6.3"


@pytest.mark.parametrize("given, expected", [
    ({}, {"ANONYMIZED_TELEMETRY": "False"}),  # behind the gateway: on a network only the gateway reaches
    ({"auth": "basic"}, {"ANONYMIZED_TELEMETRY": "False"}),
    ({"auth": "none"}, {"ANONYMIZED_TELEMETRY": "False"}),
    ({"image": NATIVE}, {
        "ANONYMIZED_TELEMETRY": "False", "CHROMA_SERVER_AUTHN_PROVIDER": ef.TOKEN_PROVIDER,
        "CHROMA_SERVER_AUTHN_CREDENTIALS_FILE": "/etc/chromactl/authz.yaml",
        "CHROMA_AUTH_TOKEN_TRANSPORT_HEADER": "Authorization",
        "CHROMA_SERVER_AUTHZ_PROVIDER": ef.RBAC_PROVIDER, "CHROMA_SERVER_AUTHZ_CONFIG_FILE": "/etc/chromactl/authz.yaml"}),
    ({"image": NATIVE, "rbac": False, "token_header": "X-Chroma-Token"}, {
        "ANONYMIZED_TELEMETRY": "False", "CHROMA_SERVER_AUTHN_PROVIDER": ef.TOKEN_PROVIDER,
        "CHROMA_SERVER_AUTHN_CREDENTIALS_FILE": "/etc/chromactl/authz.yaml",
        "CHROMA_AUTH_TOKEN_TRANSPORT_HEADER": "X-Chroma-Token"}),
    ({"image": NATIVE, "auth": "basic", "rbac": False}, {
        "ANONYMIZED_TELEMETRY": "False", "CHROMA_SERVER_AUTHN_PROVIDER": ef.BASIC_PROVIDER,
        "CHROMA_SERVER_AUTHN_CREDENTIALS_FILE": "/etc/chromactl/server.htpasswd"}),
    ({"image": NATIVE, "auth": "basic"}, {
        "ANONYMIZED_TELEMETRY": "False", "CHROMA_SERVER_AUTHN_PROVIDER": ef.BASIC_PROVIDER,
        "CHROMA_SERVER_AUTHN_CREDENTIALS_FILE": "/etc/chromactl/server.htpasswd",
        "CHROMA_SERVER_AUTHZ_PROVIDER": ef.RBAC_PROVIDER, "CHROMA_SERVER_AUTHZ_CONFIG_FILE": "/etc/chromactl/authz.yaml"}),
    ({"image": NATIVE, "auth": "none"}, {"ANONYMIZED_TELEMETRY": "False"}),
])
def test_server_environment_by_mode(given, expected):
    environment = ef.server_environment(settings(**given))
    assert environment == expected and list(environment) == list(expected)


def test_provider_classes_are_chromas():
    assert ef.TOKEN_PROVIDER == "chromadb.auth.token_authn.TokenAuthenticationServerProvider"
    assert ef.BASIC_PROVIDER == "chromadb.auth.basic_authn.BasicAuthenticationServerProvider"
    assert ef.RBAC_PROVIDER == "chromadb.auth.simple_rbac_authz.SimpleRBACAuthorizationProvider"
    assert ef.container_path("x.yaml") == "/etc/chromactl/x.yaml"


@pytest.mark.parametrize("given, text", [
    ({"auth": "none"}, "none -- this server accepts every request"),
    ({}, "token in the Authorization header, with RBAC, enforced by an nginx gateway"),
    ({"image": NATIVE, "rbac": False, "token_header": "X-Chroma-Token"},
     "token in the X-Chroma-Token header, no RBAC: every user has full access"),
    ({"auth": "basic", "image": NATIVE}, "basic (user:password), with RBAC"),
    ({"auth": "basic", "rbac": False}, "basic (user:password), no RBAC: every user has full access, enforced by an nginx gateway"),
])
def test_describe_auth(given, text):
    assert ef.describe_auth(settings(**given)) == text


@pytest.mark.parametrize("key, managed", [
    ("ANONYMIZED_TELEMETRY", True), ("CHROMA_LISTEN_ADDRESS", True), ("CHROMA_HOST_ADDR", True),
    ("CHROMA_SERVER_AUTHN_PROVIDER", True), ("CHROMA_SERVER_AUTHZ_CONFIG_FILE", True),
    ("CHROMA_SERVER_AUTH_ANYTHING", True), ("CHROMA_AUTH_TOKEN_TRANSPORT_HEADER", True),
    ("CHROMA_SERVER_CORS_ALLOW_ORIGINS", False), ("CHROMA_AUTH", False), ("ANONYMIZED_TELEMETRYX", False),
    ("IS_PERSISTENT", False), ("chroma_server_authn_provider", True),  # Chroma reads its settings in any case
])
def test_is_managed(key, managed):
    assert ef.is_managed(key) is managed


@pytest.mark.parametrize("given, env, stale", [
    ({}, {"CHROMA_LISTEN_ADDRESS": "127.0.0.1", "CHROMA_HOST_ADDR": "127.0.0.1"},
     ["CHROMA_LISTEN_ADDRESS", "CHROMA_HOST_ADDR"]),  # behind the gateway: it could not reach Chroma
    ({}, {"CHROMA_HOST_ADDR": "127.0.0.1", "MY_ADDR": "127.0.0.1"}, ["CHROMA_HOST_ADDR"]),
    ({}, {"CHROMA_LISTEN_ADDRESS": "0.0.0.0", "CHROMA_HOST_ADDR": "127.0.0.2"}, []),
    ({}, {}, []),
    ({"image": NATIVE}, {"CHROMA_LISTEN_ADDRESS": "127.0.0.1"}, []),  # no gateway: the file is left as it is
    ({"auth": "none"}, {"CHROMA_HOST_ADDR": "127.0.0.1"}, []),
])
def test_legacy_loopback_variables_are_found_only_behind_a_gateway(given, env, stale):
    assert ef.legacy_listen(settings(**given), env) == stale


def test_operator_variables_are_kept_and_chromactls_are_not():
    old = ("# comment\nANONYMIZED_TELEMETRY=True\nCHROMA_SERVER_AUTHN_PROVIDER=x\nMY_VAR=1\n"
           "CHROMA_SERVER_CORS_ALLOW_ORIGINS=[\"*\"]\nCHROMA_LISTEN_ADDRESS=0.0.0.0\n")
    assert ef.operator_variables(old) == {"MY_VAR": "1", "CHROMA_SERVER_CORS_ALLOW_ORIGINS": '["*"]'}
    assert ef.operator_variables(None) == {} and ef.operator_variables("") == {}
    assert ef.operator_variables("MY_VAR=1\nBROKEN\n") == {}  # unreadable: keeps nothing


def test_render_env_file_appends_kept_variables():
    s = settings(image=NATIVE)
    text = ef.render_env_file(s, {"MY_VAR": "1", "OTHER": "a=b"})
    assert ef.parse_env_file(text) == {**ef.server_environment(s), "MY_VAR": "1", "OTHER": "a=b"}
    assert "# Yours: kept by chromactl when it rewrites this file.\nMY_VAR=1\nOTHER=a=b\n" in text
    assert f"# Auth: {ef.describe_auth(s)}\n" in text
    plain = ef.render_env_file(s)
    assert "Yours" not in plain and plain == ef.render_env_file(s, {})
    assert ef.parse_env_file(plain) == ef.server_environment(s)


@pytest.mark.parametrize("text, expected", [
    ("A=1", {"A": "1"}), ("  A=1", {"A": "1"}), ("A=", {"A": ""}), ("A==", {"A": "="}),
    ("A=1\nA=2", {"A": "2"}), ("#A=1\n\t# B=2\n\n   \nC=3", {"C": "3"}), ("A=1 # not a comment", {"A": "1 # not a comment"}),
    ("A=\t x ", {"A": "\t x "}), ("A-B.c=1", {"A-B.c": "1"}),
])
def test_parse_env_file(text, expected):
    assert ef.parse_env_file(text) == expected


@pytest.mark.parametrize("text, line, message", [
    ("A=1\nBARE", 2, "'BARE' has no value: write KEY=VALUE"),
    ("  BARE  ", 1, "'BARE' has no value: write KEY=VALUE"),
    ("A B=1", 1, "a variable name cannot be empty or contain spaces"),
    ("A\t=1", 1, "a variable name cannot be empty or contain spaces"),
    ("A =1", 1, "a variable name cannot be empty or contain spaces"),
    ("=1", 1, "a variable name cannot be empty or contain spaces"),
    ("\n\nA=1\n=x", 4, "a variable name cannot be empty or contain spaces"),
])
def test_parse_env_file_errors(text, line, message):
    with pytest.raises(ProjectFileError) as caught:
        ef.parse_env_file(text, "custom.env")
    assert caught.value.line == line and str(caught.value) == f"custom.env:{line}: {message}"
    assert caught.value.filename == "custom.env"
    with pytest.raises(ProjectFileError) as default_name:
        ef.parse_env_file(text)
    assert default_name.value.filename == ef.ENV_FILE == ".chroma_env"
