import string

import bcrypt
import pytest
import yaml

from chromactl import roles
from chromactl.credentials import (
    AUTHZ_FILE,
    HTPASSWD_FILE,
    Credentials,
    User,
    generate_password,
    generate_token,
    hash_password,
    load_credentials,
    new_credentials,
    parse_htpasswd,
    password_problem,
    render_credential_files,
    token_problem,
    username_problem,
)
from chromactl.errors import ChromactlError, ProjectFileError
from chromactl.settings import resolve_settings

TOKEN_RBAC = resolve_settings({}, None, folder_name="p")
TOKEN_PLAIN = resolve_settings({"rbac": False}, None, folder_name="p")
BASIC_RBAC = resolve_settings({"auth": "basic", "bcrypt_rounds": 10}, None, folder_name="p")
BASIC_PLAIN = resolve_settings({"auth": "basic", "rbac": False, "bcrypt_rounds": 10}, None, folder_name="p")
HASH = hash_password("pw", 10)


@pytest.mark.parametrize("name, problem", [
    ("alice", None), ("a.b_c-d@example.org", None), ("A1", None),
    ("", "empty"), ("a:b", "':'"), ("a b", "whitespace"), ("a\tb", "whitespace"), ("a\x01b", "control"),
    ("-lead", "starting with"), ("x" * 65, "1-64"), ("é", "1-64"),
])
def test_username_rules(name, problem):
    found = username_problem(name)
    assert (found is None) if problem is None else (problem in found)


@pytest.mark.parametrize("token, ok", [
    ("a" * 16, True), ("Abc123!#$%&'()*+,-./:;<=>?@[]^_`{|}~x", True),
    ("a" * 15, False), ("", False), ("has space " + "a" * 20, False), ("é" * 20, False), ("tab\t" + "a" * 20, False),
])
def test_token_rules(token, ok):
    assert (token_problem(token) is None) == ok


@pytest.mark.parametrize("password, ok", [
    ("s3cret:with:colons", True), ("x" * 72, True), ("é" * 36, True),
    ("", False), ("x" * 73, False), ("é" * 37, False), ("line\nbreak", False),
])
def test_password_rules(password, ok):
    assert (password_problem(password) is None) == ok


def test_generated_secrets_are_letters_and_digits():
    alphabet = set(string.ascii_letters + string.digits)
    tokens = {generate_token() for _ in range(50)}
    assert len(tokens) == 50
    assert all(len(t) >= 32 and set(t) <= alphabet and token_problem(t) is None for t in tokens)
    password = generate_password()
    assert len(password) >= 20 and set(password) <= alphabet


def test_hash_uses_requested_cost_and_verifies():
    hashed = hash_password("correct horse", 11)
    assert hashed.startswith("$2b$11$")
    assert bcrypt.checkpw(b"correct horse", hashed.encode())
    assert not bcrypt.checkpw(b"wrong", hashed.encode())


@pytest.mark.parametrize("text, line, message", [
    ("alice\n", 1, "exactly one"),
    (f"alice:{HASH}\n\nbob:x:y\n", 3, "exactly one"),
    ("alice:plaintext\n", 1, "not a bcrypt hash"),
    (f"alice:{HASH}\nalice:{HASH}\n", 2, "already on line 1"),
    (f"a b:{HASH}\n", 1, "whitespace"),
    (f":{HASH}\n", 1, "exactly one"),
])
def test_broken_htpasswd_names_the_line(text, line, message):
    with pytest.raises(ProjectFileError, match=message) as caught:
        parse_htpasswd(text)
    assert caught.value.line == line and caught.value.filename == HTPASSWD_FILE
    assert HASH not in str(caught.value)


def test_htpasswd_accepts_apache_2y_hashes_and_blank_lines():
    apache = HASH.replace("$2b$", "$2y$", 1)
    assert [n for n, _, _ in parse_htpasswd(f"\nalice:{apache}\n\nbob:{HASH}\n")] == ["alice", "bob"]


def _token_creds():
    creds = new_credentials(TOKEN_RBAC)
    creds = creds.with_user(User("alice", "admin", tokens=("A" * 32,)))
    return creds.with_user(User("bob", "reader", tokens=("B" * 32, "C" * 32)))


@pytest.mark.parametrize("settings", [TOKEN_RBAC, TOKEN_PLAIN, BASIC_RBAC, BASIC_PLAIN])
def test_render_then_load_round_trips(settings):
    creds = new_credentials(settings)
    for name, role in (("alice", "admin"), ("bob", "reader")):
        role = role if settings.rbac else None
        if settings.auth == "token":
            creds = creds.with_user(User(name, role, tokens=(name.upper() * 8,)))
        else:
            creds = creds.with_user(User(name, role, password_hash=hash_password(name, 10)))
    texts = render_credential_files(creds, settings)
    assert load_credentials(settings, texts) == creds


def test_authz_has_more_than_one_line_so_chroma_never_takes_it_as_one_raw_token():
    text = render_credential_files(_token_creds(), TOKEN_RBAC)[AUTHZ_FILE]
    assert len(text.splitlines()) > 1
    single = render_credential_files(Credentials().with_user(User("a", tokens=("T" * 32,))), TOKEN_PLAIN)[AUTHZ_FILE]
    assert len(single.splitlines()) > 1 and yaml.safe_load(single) == {"users": [{"id": "a", "tokens": ["T" * 32]}]}


def _authz(doc) -> dict:
    return {AUTHZ_FILE: yaml.safe_dump(doc, sort_keys=False)}


MAPPING = {"reader": {"actions": list(roles.READER)}}


@pytest.mark.parametrize("doc, message", [
    ({"users": [{"id": "a", "role": "boss", "tokens": ["T" * 20]}], "roles_mapping": MAPPING}, "roles_mapping does not define"),
    ({"users": [{"id": "a", "role": "reader", "tokens": ["T" * 20]},
                {"id": "b", "role": "reader", "tokens": ["T" * 20]}], "roles_mapping": MAPPING}, "shares a token"),
    ({"users": [{"id": "a", "role": "reader"}], "roles_mapping": MAPPING}, "non-empty list of tokens"),
    ({"users": [{"id": "a", "role": "reader", "tokens": ["T" * 20]},
                {"id": "a", "role": "reader", "tokens": ["U" * 20]}], "roles_mapping": MAPPING}, "already on line"),
    ({"users": [{"id": "a", "tokens": ["T" * 20]}], "roles_mapping": MAPPING}, "has no role"),
    ({"users": [{"id": "a", "role": "reader", "tokens": ["T" * 20]}]}, "no roles_mapping"),
    ({"users": [], "roles_mapping": {"reader": {"actions": ["collection:peek"]}}}, "unknown action 'collection:peek'"),
    ({"users": [{"id": "a", "role": "reader", "tokens": ["short"]}], "roles_mapping": MAPPING}, "at least 16"),
    ({"users": {"a": 1}, "roles_mapping": MAPPING}, "must be a list"),
    ({"users": [], "roles_mapping": MAPPING, "extra": 1}, "unknown key 'extra'"),
])
def test_contradictory_authz_is_refused_with_its_line(doc, message):
    with pytest.raises(ProjectFileError, match=message) as caught:
        load_credentials(TOKEN_RBAC, _authz(doc))
    assert caught.value.line is not None
    assert "T" * 20 not in str(caught.value)


def test_basic_rbac_files_must_agree():
    htpasswd = f"alice:{HASH}\nbob:{HASH}\n"
    authz = _authz({"roles_mapping": MAPPING, "users": [{"id": "alice", "role": "reader"}]})
    with pytest.raises(ProjectFileError, match="'bob' has no role in authz.yaml") as caught:
        load_credentials(BASIC_RBAC, {HTPASSWD_FILE: htpasswd, **authz})
    assert caught.value.filename == HTPASSWD_FILE and caught.value.line == 2
    authz = _authz({"roles_mapping": MAPPING, "users": [{"id": "alice", "role": "reader"}, {"id": "carol", "role": "reader"}]})
    with pytest.raises(ProjectFileError, match="'carol' has no password"):
        load_credentials(BASIC_RBAC, {HTPASSWD_FILE: f"alice:{HASH}\n", **authz})


def test_missing_credential_file():
    with pytest.raises(ChromactlError, match="authz.yaml is missing"):
        load_credentials(BASIC_RBAC, {HTPASSWD_FILE: "", AUTHZ_FILE: None})


def test_every_role_can_connect_and_reader_cannot_write():
    for actions in roles.BUILTIN_ROLES.values():
        assert {"tenant:get_tenant", "db:get_database"} <= set(actions)
        assert set(actions) <= set(roles.ACTIONS)
    writes = {"collection:add", "collection:update", "collection:upsert", "collection:delete"}
    assert not writes & set(roles.READER)
    assert writes <= set(roles.WRITER)
    assert "collection:delete_collection" not in roles.WRITER
    assert set(roles.ADMIN) == set(roles.ACTIONS)
