"""Settings validation field by field, at and beyond each bound, and the defaults that decide
security (TLS off only on loopback, the gateway in front of a server that ignores auth)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from chromactl import settings as st
from chromactl.errors import ChromactlError, ProjectFileError, UsageError

BASE = st.resolve_settings({}, None, folder_name="p")  # token, RBAC, 1.5.9 behind nginx, 0.0.0.0, TLS auto
NATIVE = st.resolve_settings({"image": "chromadb/chroma:0.6.3"}, None, folder_name="p")


def problem(**changes):
    return st.validate_settings(replace(BASE, **changes))


@pytest.mark.parametrize("value, ok", [
    (0, False), (1, True), (2, True), (8000, True), (65534, True), (65535, True), (65536, False), (-1, False),
    (True, False), (False, False), ("8000", False), (8000.0, False), (None, False),
])
def test_port_bounds(value, ok):
    found = problem(port=value)
    assert (found is None) if ok else (found[0] == "port" and "from 1 to 65535" in found[1])


@pytest.mark.parametrize("value, ok", [
    (3, False), (4, True), (5, True), (13, True), (14, True), (15, False), (0, False),
    (True, False), ("6", False), (6.0, False), (None, False),
])
def test_bcrypt_rounds_bounds(value, ok):
    found = problem(bcrypt_rounds=value)
    assert (found is None) if ok else (found[0] == "bcrypt_rounds" and "from 4 to 14" in found[1])


@pytest.mark.parametrize("field, good, bad, message", [
    ("auth", ("token", "basic"), ("TOKEN", "", "oauth", None), "unknown auth mode"),
    ("token_header", ("Authorization", "X-Chroma-Token"), ("authorization", "X-Token", ""), "unknown token header"),
    ("gateway", ("nginx", "none"), ("envoy", "Nginx", "", None), "unknown gateway"),
    ("tls", ("auto", "off"), ("on", "AUTO", "", None, True), "unknown tls mode"),
    ("rbac", (True, False), ("yes", 1, None), "rbac must be true or false"),
    ("host", ("0.0.0.0", "127.0.0.1", "::1", "::", "10.1.2.3"), ("localhost", "", "300.1.1.1", "1.2.3"), "invalid host"),
    ("name", ("a", "A" * 63, "a.b_c-d", "9"), ("", "A" * 64, "-a", ".a", "a b", "a/b", None), "invalid name"),
    ("image", ("a", "x" * 255, "registry:5000/a/b:1.0@sha256:abc"), ("", "x" * 256, "a b", "-a", None), "invalid image"),
    ("gateway_image", ("nginx:1.27.5", "x" * 255), ("", "x" * 256, "a b", None), "invalid image"),
    ("data_volume", (None, "vol", "v" * 63), ("", "v" * 64, "a b", "-v", 5), "invalid volume name"),
    ("data_path", (None, "/data", "/chroma/chroma", "/a.b_c-d/..e", "/data/./x", "/data/"),
     ("", "data", "./data", "/", "//", "/.", "/./", "/../data", "/data/../etc", "/data/..", "/a b", 5), "invalid data path"),
    ("tls_san", ((), ("a.example",), ("*.example.org", "10.0.0.1", "::1", "a-b.c"), ("x" * 63,)),
     (("a b",), ("-a.com",), ("a-.com",), ("a..b",), ("*",), ("x" * 64,), ("a." * 126 + "ab",), (5,)), "invalid name"),
])
def test_each_field_alone(field, good, bad, message):
    for value in good:
        assert problem(**{field: value}) is None, value
    for value in bad:
        found = problem(**{field: value})
        assert found is not None and found[0] == field and message in found[1], (value, found)


def test_dns_names_up_to_253_characters():
    name = ".".join(["a" * 63] * 3 + ["b" * 61])  # 253
    assert len(name) == 253 and problem(tls_san=(name,)) is None
    assert problem(tls_san=(name + "c",))[0] == "tls_san"


def test_combinations():
    assert problem(auth="none", rbac=True)[1].startswith("RBAC needs authentication")
    assert problem(auth="none", rbac=False, gateway="nginx")[1].startswith("a gateway enforces auth")
    assert problem(auth="none", rbac=False, gateway="none") is None
    for key in ("tls_cert", "tls_key", "tls_ca"):
        files = {"tls": "files", "tls_cert": "c.pem", "tls_key": "k.pem", "tls_ca": "ca.pem"}
        assert problem(**files) is None
        assert problem(**{**files, key: None}) == (key, f"tls files needs {key.replace('_', '-')} (a path to a PEM file)")
        assert problem(**{**files, key: ""})[0] == key
    assert problem(tls="auto", tls_cert=None) is None  # only files mode needs them


def test_a_bad_value_is_blamed_on_the_file_or_the_flag_that_holds_it():
    """The file is named when it holds the bad value, or when no flag was given at all; a flag
    is named when it made the combination, even though the file lists the key (as null)."""
    stored = {**BASE.to_dict(), "port": 70000}
    for given in ({}, {"port": None, "tls": None}, {"bcrypt_rounds": 6}, {"name": "other"}):
        with pytest.raises(ChromactlError, match=r"^chromactl.yaml: invalid port 70000"):
            st.resolve_settings(given, stored, folder_name="p")
    files = {**BASE.to_dict(), "tls": "files", "tls_cert": None}  # as `init` writes it: tls_cert: null
    for given in ({}, {"port": None, "tls_cert": None}):
        with pytest.raises(ChromactlError, match=r"^chromactl.yaml: tls files needs tls-cert"):
            st.resolve_settings(given, files, folder_name="p")
    del files["tls_cert"]
    with pytest.raises(ChromactlError, match=r"^chromactl.yaml: tls files needs tls-cert"):
        st.resolve_settings({}, files, folder_name="p")
    auto = {**BASE.to_dict(), "tls_cert": None}
    for given in ({"tls": "files"}, {"tls": "files", "port": None}):  # `init --force --tls files`
        with pytest.raises(UsageError, match=r"^--tls-cert: tls files needs tls-cert"):
            st.resolve_settings(given, auto, folder_name="p")


def test_the_first_problem_is_the_one_reported():
    assert problem(name="bad name", port=0)[0] == "name"
    assert problem(port=0, bcrypt_rounds=99)[0] == "port"
    assert problem(auth="x", tls="x")[0] == "auth"


@pytest.mark.parametrize("host, loopback", [
    ("127.0.0.1", True), ("127.255.0.9", True), ("::1", True),
    ("0.0.0.0", False), ("::", False), ("10.0.0.1", False), ("128.0.0.1", False),
    ("localhost", False), ("", False), ("garbage", False), ("127.0.0.1 ", False), ("127.0.0.1/8", False),
])
def test_is_loopback(host, loopback):
    assert st.is_loopback(host) is loopback


def test_tls_defaults_to_auto_beyond_loopback_and_unparsable_addresses():
    assert st.derived_default("tls", "token", st.DEFAULT_IMAGE, "127.0.0.1") == "off"
    assert st.derived_default("tls", "token", st.DEFAULT_IMAGE, "::1") == "off"
    for host in ("0.0.0.0", "192.168.1.5", "localhost", ""):
        assert st.derived_default("tls", "token", st.DEFAULT_IMAGE, host) == "auto"
    assert st.resolve_settings({"host": "127.0.0.1"}, None, folder_name="p").tls == "off"
    assert st.resolve_settings({"host": "0.0.0.0"}, None, folder_name="p").tls == "auto"
    assert BASE.tls == "auto" and BASE.uses_tls
    assert st.resolve_settings({"auth": "none"}, None, folder_name="p").tls == "off"


def test_derived_defaults():
    assert st.derived_default("rbac", "token", "", "") is True and st.derived_default("rbac", "none", "", "") is False
    assert st.derived_default("host", "basic", "", "") == "0.0.0.0" and st.derived_default("host", "none", "", "") == "127.0.0.1"
    assert st.derived_default("gateway", "token", st.DEFAULT_IMAGE, "") == "nginx"
    with pytest.raises(KeyError):
        st.derived_default("port", "token", "", "")


@pytest.mark.parametrize("auth, image, gateway", [
    ("token", "chromadb/chroma:1.5.9", "nginx"), ("basic", "chromadb/chroma:latest", "nginx"),
    ("none", "chromadb/chroma:1.5.9", "none"), ("token", "chromadb/chroma:0.6.3", "none"),
])
def test_default_gateway(auth, image, gateway):
    assert st.default_gateway(auth, image) == gateway


def test_properties_and_dict():
    assert BASE.uses_gateway and BASE.auth_enabled and not NATIVE.uses_gateway
    none = st.resolve_settings({"auth": "none"}, None, folder_name="p")
    assert not none.auth_enabled and not none.uses_tls and not none.uses_gateway
    with_san = replace(BASE, tls_san=("a.example", "10.0.0.1"))
    assert with_san.to_dict()["tls_san"] == ["a.example", "10.0.0.1"] and with_san.to_dict()["port"] == 8000
    assert set(st.FIELDS) == set(BASE.to_dict())


def test_precedence_names_the_source_of_a_bad_value():
    stored = {"name": "s", "auth": "token", "rbac": True, "token_header": "Authorization", "image": st.DEFAULT_IMAGE,
              "host": "0.0.0.0", "port": 70000, "bcrypt_rounds": 20}
    with pytest.raises(ChromactlError, match=r"^chromactl.yaml: invalid port 70000"):
        st.resolve_settings({}, stored, folder_name="p")
    with pytest.raises(ChromactlError, match=r"^--port: invalid port 0"):
        st.resolve_settings({"port": 0}, stored, folder_name="p")
    with pytest.raises(ChromactlError, match=r"^--bcrypt-rounds: bcrypt rounds"):
        st.resolve_settings({"port": 8000, "bcrypt_rounds": 3}, stored, folder_name="p")
    with pytest.raises(ChromactlError, match=r"^--token-header: unknown token header"):
        st.resolve_settings({"token_header": "x"}, None, folder_name="p")
    assert st.resolve_settings({"tls_san": None}, {**stored, "port": 1, "bcrypt_rounds": 4, "tls_san": ["a.b"]},
                               folder_name="p").tls_san == ("a.b",)


def test_without_derived_defaults_keeps_only_chosen_values():
    stored = {"auth": "token", "image": st.DEFAULT_IMAGE, "rbac": True, "host": "0.0.0.0", "gateway": "nginx",
              "tls": "auto", "port": 9000}
    assert st.without_derived_defaults(stored) == {"auth": "token", "image": st.DEFAULT_IMAGE, "port": 9000}
    chosen = {**stored, "rbac": False, "host": "127.0.0.1", "gateway": "none", "tls": "auto"}
    assert st.without_derived_defaults(chosen) == {**chosen}  # auto on loopback was chosen
    assert st.without_derived_defaults({"host": "127.0.0.1", "tls": "off"}) == {"host": "127.0.0.1"}
    assert st.without_derived_defaults({"auth": "none", "host": "127.0.0.1", "rbac": False}) == {"auth": "none"}
    assert st.without_derived_defaults({}) == {}
    # Each key missing from the file takes its default when the others are derived.
    assert st.without_derived_defaults({"gateway": "nginx"}) == {}  # the default image is 1.x
    assert st.without_derived_defaults({"image": "chromadb/chroma:0.6.3", "gateway": "none"}) == {
        "image": "chromadb/chroma:0.6.3"}
    assert st.without_derived_defaults({"auth": "none", "tls": "off"}) == {"auth": "none"}  # on loopback
    assert st.without_derived_defaults({"auth": "none", "rbac": False, "tls": "auto"}) == {"auth": "none", "tls": "auto"}
    assert st.without_derived_defaults({"tls": "auto", "gateway": "nginx", "rbac": True}) == {}


SETTINGS_TEXT = """name: p
auth: token
rbac: true
token_header: Authorization
image: chromadb/chroma:0.6.3
host: 127.0.0.1
port: 8000
"""


def test_settings_file_optional_keys_take_their_derived_defaults():
    values = st.parse_settings_file(SETTINGS_TEXT)
    assert values["data_volume"] is None and "tls" not in values and "gateway" not in values
    beyond = st.parse_settings_file(SETTINGS_TEXT.replace("127.0.0.1", "0.0.0.0").replace("0.6.3", "1.5.9"))
    assert beyond["host"] == "0.0.0.0"
    with pytest.raises(ProjectFileError, match="a gateway enforces auth") as caught:
        st.parse_settings_file(SETTINGS_TEXT.replace("auth: token", "auth: none").replace("rbac: true", "rbac: false")
                               + "gateway: nginx\n")
    assert caught.value.line == 8
    # Absent, the gateway and TLS are derived, then checked: a 1.x image with auth none gets none.
    st.parse_settings_file(SETTINGS_TEXT.replace("auth: token", "auth: none").replace("rbac: true", "rbac: false")
                           .replace("0.6.3", "1.5.9"))


@pytest.mark.parametrize("text, line, message", [
    ("", None, "the file is empty"),
    ("- a\n", None, "must be a mapping"),
    (SETTINGS_TEXT + "colour: blue\n", 8, "unknown setting 'colour'"),
    (SETTINGS_TEXT.replace("port: 8000\n", ""), None, "missing setting 'port'"),
    (SETTINGS_TEXT.replace("name: p\n", ""), None, "missing setting 'name'"),
    (SETTINGS_TEXT.replace("port: 8000", "port: 65536"), 7, "invalid port"),
    (SETTINGS_TEXT + "bcrypt_rounds: 15\n", 8, "bcrypt rounds"),
    (SETTINGS_TEXT + "tls: on\n", 8, "unknown tls mode"),
    (SETTINGS_TEXT + "tls: files\n", None, "tls files needs tls-cert"),
])
def test_broken_settings_files(text, line, message):
    with pytest.raises(ProjectFileError, match=message) as caught:
        st.parse_settings_file(text)
    assert caught.value.filename == "chromactl.yaml"
    if line is not None:
        assert caught.value.line == line


def test_render_round_trips_every_field():
    full = replace(BASE, tls="files", tls_cert="/c.pem", tls_key="/k.pem", tls_ca="/ca.pem", tls_san=("a.example",),
                   data_volume="chromactl-p-data-2", bcrypt_rounds=14, port=65535)
    text = st.render_settings_file(full)
    assert "data_volume: \"chromactl-p-data-2\"" in text
    assert st.parse_settings_file(text) == full.to_dict()
    assert "data_volume" not in st.render_settings_file(BASE)


def test_every_setting_is_taken_from_flags_then_file_then_default():
    stored = {"name": "s", "auth": "token", "rbac": True, "token_header": "Authorization", "image": st.DEFAULT_IMAGE,
              "host": "0.0.0.0", "port": 8000, "gateway_image": "mirror/nginx:1", "tls": "files",
              "tls_cert": "/s/c.pem", "tls_key": "/s/k.pem", "tls_ca": "/s/ca.pem", "tls_san": ["s.example"]}
    from_file = st.resolve_settings({}, stored, folder_name="p")
    assert (from_file.gateway_image, from_file.tls, from_file.tls_cert, from_file.tls_key, from_file.tls_ca,
            from_file.tls_san) == ("mirror/nginx:1", "files", "/s/c.pem", "/s/k.pem", "/s/ca.pem", ("s.example",))
    flags = {"gateway_image": "other/nginx:2", "tls_cert": "/f/c.pem", "tls_key": "/f/k.pem", "tls_ca": "/f/ca.pem",
             "tls_san": ["f.example"]}
    from_flags = st.resolve_settings(flags, stored, folder_name="p")
    assert (from_flags.gateway_image, from_flags.tls_cert, from_flags.tls_key, from_flags.tls_ca,
            from_flags.tls_san) == ("other/nginx:2", "/f/c.pem", "/f/k.pem", "/f/ca.pem", ("f.example",))
    assert st.resolve_settings({"tls": "off"}, stored, folder_name="p").tls == "off"
    defaults = st.resolve_settings({}, None, folder_name="p")
    assert (defaults.gateway_image, defaults.tls_cert, defaults.tls_key, defaults.tls_ca, defaults.tls_san,
            defaults.data_volume) == (st.DEFAULT_GATEWAY_IMAGE, None, None, None, (), None)


@pytest.mark.parametrize("folder, name", [
    ("proj", "proj"), ("-proj-", "proj"), ("__x__", "x"), (".a.", "a"), ("a b", "a-b"), ("my project!", "my-project"),
    ("x" * 70, "x" * 63), ("---", "chroma"), ("", "chroma"), ("é", "chroma"), ("XproX", "XproX"),
])
def test_default_name(folder, name):
    assert st.default_name(folder) == name


def test_derived_gateway_and_unknown_keys():
    assert st.derived_default("gateway", "none", st.DEFAULT_IMAGE, "") == "none"
    with pytest.raises(KeyError, match="colour"):
        st.derived_default("colour", "token", "", "")


@pytest.mark.parametrize("changes, message", [
    ({"auth": "x"}, "unknown auth mode 'x': use one of token, basic, none"),
    ({"rbac": "yes"}, "rbac must be true or false"),
    ({"token_header": "x"}, "unknown token header 'x': use Authorization or X-Chroma-Token"),
    ({"gateway": "x"}, "unknown gateway 'x': use nginx or none"),
    ({"tls": "x"}, "unknown tls mode 'x': use auto, files, off"),
    ({"port": 0}, "invalid port 0: give a number from 1 to 65535"),
    ({"bcrypt_rounds": 3}, "bcrypt rounds must be a number from 4 to 14, not 3"),
    ({"host": "h"}, "invalid host address 'h': give an IP address such as 127.0.0.1 or 0.0.0.0"),
    ({"name": "-"}, "invalid name '-': use 1-63 letters, digits, '_', '.' or '-', starting with a letter or digit"),
    ({"image": "a b"}, "invalid image reference 'a b'"),
    ({"gateway_image": "a b"}, "invalid image reference 'a b'"),
    ({"tls_san": ("a b",)}, "invalid name 'a b' for the certificate: give a DNS name or an IP address"),
    ({"data_volume": "a b"}, "invalid volume name 'a b': use letters, digits, '_', '.' or '-'"),
    ({"data_path": "//"}, "invalid data path '//': give an absolute path in the container, e.g. /data"),
    ({"auth": "none", "rbac": True}, "RBAC needs authentication: use auth token or basic, or turn rbac off"),
    ({"auth": "none", "rbac": False, "gateway": "nginx"}, "a gateway enforces auth: with auth none there is nothing for it to do"),
])
def test_messages(changes, message):
    assert problem(**changes)[1] == message
    assert problem(**changes)[0] in changes


def test_settings_file_errors_name_the_file():
    with pytest.raises(ProjectFileError) as caught:
        st.parse_settings_file("")
    assert str(caught.value) == "chromactl.yaml: the file is empty"
    with pytest.raises(ProjectFileError) as caught:
        st.parse_settings_file("a: [\n")
    assert caught.value.filename == "chromactl.yaml"
    with pytest.raises(ProjectFileError) as caught:
        st.parse_settings_file(SETTINGS_TEXT + "colour: blue\n")
    assert caught.value.hint == "known settings: " + ", ".join(st.FIELDS)
