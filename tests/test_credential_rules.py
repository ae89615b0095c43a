"""Every rule that guards a secret or a name, at, below and above its limit, one rule broken
at a time (a short password with a control character would be refused for its length, and
prove nothing about the control-character rule)."""

from __future__ import annotations

import base64
import hashlib
import string
from dataclasses import replace

import bcrypt
import pytest
import yaml

from chromactl import credentials as cr
from chromactl import roles
from chromactl.credentials import Credentials, User
from chromactl.errors import ChromactlError, ProjectFileError, UsageError
from chromactl.settings import resolve_settings

TOKEN_RBAC = resolve_settings({}, None, folder_name="p")
TOKEN_PLAIN = resolve_settings({"rbac": False}, None, folder_name="p")
BASIC_RBAC = resolve_settings({"auth": "basic"}, None, folder_name="p")
BASIC_PLAIN = resolve_settings({"auth": "basic", "rbac": False}, None, folder_name="p")
BASIC_NATIVE = resolve_settings({"auth": "basic", "rbac": False, "image": "chromadb/chroma:0.6.3"}, None, folder_name="p")
NONE = resolve_settings({"auth": "none"}, None, folder_name="p")
HASH = cr.hash_password("a-password-of-16+", 4)
SSHA = cr.hash_generated("generated-password-xxxxx", BASIC_RBAC)

# --- passwords -------------------------------------------------------------------------------

PASSWORD_EMPTY, PASSWORD_CONTROL, PASSWORD_LONG, PASSWORD_SHORT = "empty", "control characters", "72 bytes", "at least 16"


@pytest.mark.parametrize("password, problem", [
    ("", PASSWORD_EMPTY),
    ("x" * 15, PASSWORD_SHORT), ("x" * 16, None), ("x" * 17, None),
    ("é" * 15, PASSWORD_SHORT), ("é" * 16, None),  # counted in characters...
    ("x" * 71, None), ("x" * 72, None), ("x" * 73, PASSWORD_LONG),
    ("é" * 36, None), ("é" * 35 + "xx", None), ("é" * 36 + "x", PASSWORD_LONG),  # ...and capped in bytes
    ("€" * 24, None), ("€" * 24 + "x", PASSWORD_LONG),
    (" " * 16, None), ("~" * 16, None), ("x" * 15 + " ", None),  # space (32) and ~ (126) are printable
    # Control characters in passwords long enough for every other rule.
    ("x" * 30 + "\x00", PASSWORD_CONTROL), ("x" * 30 + "\x1f", PASSWORD_CONTROL), ("\x7f" + "x" * 30, PASSWORD_CONTROL),
    ("x" * 15 + "\n" + "x" * 15, PASSWORD_CONTROL), ("x" * 30 + "\r", PASSWORD_CONTROL), ("\t" + "x" * 30, PASSWORD_CONTROL),
    # One rule at a time: a control character in a password too long is named as such.
    ("x" * 80 + "\n", PASSWORD_CONTROL),
])
def test_password_rules(password, problem):
    found = cr.password_problem(password)
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found
        assert password not in found or not password


def test_each_password_message_names_only_its_rule():
    messages = [cr.password_problem(p) for p in ("", "x" * 30 + "\x01", "x" * 73, "x" * 15)]
    assert len(set(messages)) == 4
    assert "let chromactl generate one" in messages[3]


# --- tokens ------------------------------------------------------------------------------------

TOKEN_EMPTY, TOKEN_CHARS, TOKEN_SHORT = "empty", "only ASCII letters, digits and punctuation", "at least 16"


@pytest.mark.parametrize("token, problem", [
    ("", TOKEN_EMPTY),
    ("a" * 15, TOKEN_SHORT), ("a" * 16, None), ("a" * 17, None), ("a" * 400, None),
    ("!" * 15, TOKEN_SHORT), ("!" * 16, None),
    ("a" * 39 + " ", TOKEN_CHARS), ("a" * 39 + "\t", TOKEN_CHARS), ("a" * 39 + "\n", TOKEN_CHARS),
    ("a" * 39 + "é", TOKEN_CHARS), ("a" * 39 + "\x7f", TOKEN_CHARS), ("a" * 39 + "\x00", TOKEN_CHARS),
    ("ab c", TOKEN_CHARS),  # too short as well: the alphabet is named first
])
def test_token_rules(token, problem):
    found = cr.token_problem(token)
    assert (found is None) if problem is None else (found is not None and problem in found)


@pytest.mark.parametrize("char", string.punctuation + string.ascii_letters + string.digits)
def test_every_printable_ascii_character_is_allowed_in_a_token(char):
    assert cr.token_problem(char * 16) is None
    assert cr.token_problem(char * 15) is not None


# --- names -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, problem", [
    ("a", None), ("Z9", None), ("0", None), ("a" * 64, None), ("a" * 65, "1-64"),
    ("a.b_c-d@e", None), ("a" + "._@-" * 15, None),
    ("", "empty"), (None, "must be a string"), (5, "must be a string"),
    ("a:b", "':'"), (":", "':'"),
    ("a b", "whitespace"), ("a\tb", "whitespace"), ("a\nb", "whitespace"), ("a\u00a0b", "whitespace"),
    ("a\x00b", "control"), ("a\x01b", "control"), ("a\x1bb", "control"), ("a\x7fb", "control"),
    ("a\x1fb", "whitespace"),  # \x1f is whitespace to Python: refused either way
    (".a", "starting with"), ("_a", "starting with"), ("@a", "starting with"), ("-a", "starting with"),
    ("a/b", "1-64"), ("a$b", "1-64"), ('a"b', "1-64"), ("é", "1-64"), ("a;b", "1-64"), ("a{b", "1-64"),
])
def test_name_rules(name, problem):
    found = cr.name_problem(name)
    assert (found is None) if problem is None else (found is not None and problem in found)


def test_name_messages_say_what_the_name_is():
    assert cr.name_problem("", "role name") == "the role name is empty"
    assert cr.username_problem("a b") == "a user name cannot contain whitespace"
    assert cr.name_problem(3) == "a name must be a string"
    assert cr.name_problem("a:b", "role name") == "a role name cannot contain ':'"
    assert cr.name_problem("a\x7f", "x") == "a x cannot contain control characters"


def test_check_username_quotes_the_name_and_shortens_it():
    with pytest.raises(ChromactlError, match=r"^invalid user name 'a b': a user name cannot contain whitespace$"):
        cr.check_username("a b")
    cr.check_username("alice")  # no error
    with pytest.raises(ChromactlError) as caught:
        cr.check_username("-" * 68)  # repr is 70 characters: shown whole
    assert repr("-" * 68) in str(caught.value)
    with pytest.raises(ChromactlError) as caught:
        cr.check_username("-" * 69)  # repr is 71: cut to 67 and "..."
    assert repr("-" * 69)[:67] + "...:" in str(caught.value) and repr("-" * 69) not in str(caught.value)


# --- generated secrets and hashes ----------------------------------------------------------------


def test_generated_secrets_have_their_length_and_alphabet():
    tokens = {cr.generate_token() for _ in range(50)}
    passwords = {cr.generate_password() for _ in range(50)}
    assert len(tokens) == 50 and len(passwords) == 50
    assert {len(t) for t in tokens} == {40} and {len(p) for p in passwords} == {24}
    alphabet = set(string.ascii_letters + string.digits)
    assert set("".join(tokens)) <= alphabet and set("".join(passwords)) <= alphabet
    assert all(cr.token_problem(t) is None for t in tokens)
    assert all(cr.password_problem(p) is None for p in passwords)
    # All 62 characters turn up in 3,200 draws: the alphabet is not cut short.
    assert set("".join(tokens) + "".join(passwords)) == alphabet


def test_hash_generated_is_salted_sha1_behind_the_gateway_and_cheap_bcrypt_natively():
    hashed = cr.hash_generated("generated-password-xxxxx", BASIC_RBAC)
    raw = base64.b64decode(hashed[len("{SSHA}"):])
    digest, salt = raw[:20], raw[20:]
    assert hashed.startswith("{SSHA}") and len(salt) == cr.SSHA_SALT_BYTES
    assert hashlib.sha1(b"generated-password-xxxxx" + salt).digest() == digest
    assert cr.hash_generated("generated-password-xxxxx", BASIC_RBAC) != hashed  # a new salt each time
    native = cr.hash_generated("generated-password-xxxxx", BASIC_NATIVE)
    assert native.startswith("$2b$04$") and bcrypt.checkpw(b"generated-password-xxxxx", native.encode())
    assert cr.parse_htpasswd(f"a:{hashed}\n") == [("a", hashed, 1)]


def test_hash_cost():
    assert cr.hash_cost(cr.hash_password("x", 5)) == 5
    assert cr.hash_cost(HASH.replace("$2b$", "$2y$")) == 4
    assert cr.hash_cost(SSHA) is None and cr.hash_cost(None) is None and cr.hash_cost("") is None
    assert cr.hash_cost(HASH + "x") is None and cr.hash_cost(HASH[:-1]) is None


# --- server.htpasswd -----------------------------------------------------------------------------


@pytest.mark.parametrize("text, line, message", [
    (f"a:{HASH}:x\n", 1, "exactly one"), ("a:\n", 1, "exactly one"), (f":{HASH}\n", 1, "exactly one"),
    ("just-a-name\n", 1, "exactly one"),
    (f"ok:{HASH}\n-bad:{HASH}\n", 2, "starting with"),
    ("a:plaintext\n", 1, "not a bcrypt hash"), (f"a:{HASH[:-1]}\n", 1, "not a bcrypt hash"),
    (f"a:{SSHA}x\n", 1, "not a bcrypt hash"), ("a:{SSHA}" + "A" * 39 + "=\n", 1, "not a bcrypt hash"),
    (f"a:{HASH}\n\n  \nb:{HASH}\na:{HASH}\n", 5, "already on line 1"),
])
def test_broken_htpasswd(text, line, message):
    with pytest.raises(ProjectFileError, match=message) as caught:
        cr.parse_htpasswd(text)
    assert caught.value.line == line and caught.value.filename == cr.HTPASSWD_FILE


def test_htpasswd_accepts_both_ssha_encodings_and_surrounding_spaces():
    with_padding = "{SSHA}" + "A" * 38 + "=="
    without = "{SSHA}" + "A" * 40
    assert cr.parse_htpasswd(f"  a:{with_padding}  \n\tb:{without}\n") == [("a", with_padding, 1), ("b", without, 2)]
    assert cr.parse_htpasswd(f"a:{'{SSHA}' + 'A' * 38 + '='}\n")[0][0] == "a"
    assert cr.parse_htpasswd("") == []


# --- authz.yaml ----------------------------------------------------------------------------------

READERS = {"reader": {"actions": ["tenant:get_tenant", "db:get_database"]}}


def authz(doc) -> dict[str, str]:
    return {cr.AUTHZ_FILE: yaml.safe_dump(doc, sort_keys=False)}


def user(name="alice", role="reader", tokens=("T" * 20,)) -> dict:
    entry = {"id": name}
    if role is not None:
        entry["role"] = role
    if tokens is not None:
        entry["tokens"] = list(tokens)
    return entry


SCOPE_NAME_RULE = "name is 3-63 letters, digits, '.', '_' or '-', starting and ending with a letter or digit"
NOT_A_LIST = "user 'alice': 'databases' must be a non-empty list (or [\"*\"] for all of the tenant's)"


def scoped(name="alice", role="reader", tokens=("T" * 20,), **scope) -> dict:
    """A user of authz.yaml with a scope (tenant acme unless told); a scope key given as None is left out."""
    scope = {"tenant": "acme", **scope}
    return {**user(name, role, tokens), **{key: value for key, value in scope.items() if value is not None}}


@pytest.mark.parametrize("settings, doc, where, message", [
    (TOKEN_RBAC, {"roles_mapping": READERS, "users": [user(name="-bad")]}, "id: -bad",
     "a user name is 1-64 letters, digits, '.', '_', '@' or '-', starting with a letter or digit"),
    (TOKEN_RBAC, {"roles_mapping": READERS, "users": [{"role": "reader", "id": "a b"}]}, "id: a b",
     'a user name cannot contain whitespace'),
    (TOKEN_RBAC, {"roles_mapping": READERS, "users": [user(name="x" * 65)]}, "id: xxx",
     "a user name is 1-64 letters, digits, '.', '_', '@' or '-', starting with a letter or digit"),
    (TOKEN_RBAC, {"roles_mapping": READERS, "users": [user(name=5)]}, "id: 5", "each user needs an 'id'"),
    (TOKEN_RBAC, {"roles_mapping": READERS, "users": [{"role": "reader", "tokens": ["T" * 20]}]}, "- role:",
     "each user needs an 'id'"),
    (TOKEN_RBAC, {"roles_mapping": READERS, "users": [user(tokens=[])]}, "- id: alice",
     "user 'alice' needs a non-empty list of tokens"),
    (TOKEN_RBAC, {"roles_mapping": READERS, "users": [user(tokens=None)]}, "- id: alice",
     "user 'alice' needs a non-empty list of tokens"),
    (TOKEN_RBAC, {"roles_mapping": READERS, "users": [{**user(tokens=None), "tokens": "T" * 20}]}, "- id: alice",
     "user 'alice' needs a non-empty list of tokens"),
    (TOKEN_RBAC, {"roles_mapping": READERS, "users": [user(tokens=["T" * 20, 12345678901234567])]}, "- 1234",
     "user 'alice': a token must be a string"),
    (TOKEN_RBAC, {"roles_mapping": READERS, "users": [user(tokens=["T" * 20, "V" * 15])]}, "- VVV",
     "user 'alice': a token needs at least 16 characters"),
    (TOKEN_RBAC, {"roles_mapping": READERS, "users": [user(tokens=["T" * 20, "V" * 19 + " "])]}, "- 'VVV",
     "user 'alice': Chroma accepts only ASCII letters, digits and punctuation in a token (no spaces)"),
    (TOKEN_RBAC, {"roles_mapping": READERS, "users": [user(role=None)]}, "- id: alice", "user 'alice' has no role"),
    (TOKEN_RBAC, {"roles_mapping": READERS, "users": [user(role=["reader"])]}, "- id: alice",
     "user 'alice' has no role"),
    (TOKEN_RBAC, {"roles_mapping": READERS, "users": [user(role="admin")]}, "role: admin",
     "user 'alice' has role 'admin', which roles_mapping does not define"),
    (TOKEN_RBAC, {"roles_mapping": READERS, "users": [{**user(), "password": "x"}]}, "password:",
     "unknown user key 'password' (auth is token)"),
    (BASIC_RBAC, {"roles_mapping": READERS, "users": [user()]}, "tokens:", "unknown user key 'tokens' (auth is basic)"),
    (TOKEN_RBAC, {"roles_mapping": READERS, "users": ["alice"]}, "- alice",
     'each user must be a mapping of keys to values'),
    (TOKEN_RBAC, {"roles_mapping": READERS}, "roles_mapping:", "'users' must be a list"),
    (TOKEN_RBAC, {"roles_mapping": READERS, "users": None}, "users:", "'users' must be a list"),
    (TOKEN_RBAC, {"users": []}, "users:", 'RBAC is on but there is no roles_mapping'),
    (TOKEN_RBAC, {"users": [], "roles_mapping": ["reader"]}, "roles_mapping:",
     'roles_mapping must be a mapping of keys to values'),
    (TOKEN_RBAC, {"roles_mapping": {"ok": {"actions": []}, "re ader": {"actions": []}}, "users": []}, "re ader:",
     "invalid role name 're ader': a role name cannot contain whitespace"),
    (TOKEN_RBAC, {"roles_mapping": {"-r": {"actions": []}}, "users": []}, "-r:",
     "invalid role name '-r': a role name is 1-64 letters, digits, '.', '_', '@' or '-', starting with a letter or digit"),
    (TOKEN_RBAC, {"roles_mapping": {"r": ["tenant:get_tenant"]}, "users": []}, "  r:",
     "role 'r' must be a mapping of keys to values"),
    (TOKEN_RBAC, {"roles_mapping": {"r": {"actions": [], "extra": 1}}, "users": []}, "extra:",
     "role 'r': unknown key 'extra'"),
    (TOKEN_RBAC, {"roles_mapping": {"r": {"actions": "db:get_database"}}, "users": []}, "  r:",
     "role 'r' needs a list of actions"),
    (TOKEN_RBAC, {"roles_mapping": {"r": {}}, "users": []}, "  r:", "role 'r' needs a list of actions"),
    (TOKEN_RBAC, {"roles_mapping": {"r": {"actions": ["db:get_database", "db:drop"]}}, "users": []}, "- db:drop",
     "role 'r': unknown action 'db:drop' (Chroma's actions are system:reset, tenant:create_tenant, "
     "tenant:get_tenant, db:create_database, db:get_database, db:delete_database, db:list_databases, "
     "db:list_collections, db:count_collections, db:create_collection, db:get_or_create_collection, "
     "collection:get_collection, collection:delete_collection, collection:update_collection, collection:add, "
     "collection:delete, collection:get, collection:query, collection:count, collection:update, collection:upsert "
     "(README: Roles))"),
    (TOKEN_RBAC, {"roles_mapping": {"r": {"actions": ["collection:qeury"]}}, "users": []}, "- collection:qeury",
     "role 'r': unknown action 'collection:qeury' (did you mean 'collection:query'? Chroma's actions are "
     "system:reset, tenant:create_tenant, tenant:get_tenant, db:create_database, db:get_database, "
     "db:delete_database, db:list_databases, db:list_collections, db:count_collections, db:create_collection, "
     "db:get_or_create_collection, collection:get_collection, collection:delete_collection, "
     "collection:update_collection, collection:add, collection:delete, collection:get, collection:query, "
     "collection:count, collection:update, collection:upsert (README: Roles))"),
    (TOKEN_RBAC, {"roles_mapping": READERS, "users": [], "extra": 1}, "extra:", "unknown key 'extra'"),
    (TOKEN_RBAC, {"roles_mapping": READERS, "users": [user(), user(name="bob", tokens=["W" * 16, "T" * 20])]}, "- TTT",
     "user 'bob' shares a token with user 'alice'"),
    (TOKEN_RBAC, {"roles_mapping": READERS, "users": [user(), user(tokens=["U" * 20])]}, "- id: alice",
     "user 'alice' is already on line 7"),
    # Scopes: a tenant and some of its databases, in Chroma's keys.
    (TOKEN_RBAC, {"roles_mapping": READERS, "users": [scoped(tenant=None, databases=["prod"])]}, "databases:",
     "user 'alice' has databases but no tenant"),
    (TOKEN_RBAC, {"roles_mapping": READERS, "users": [scoped(tenant="ac")]}, "tenant: ac",
     f"user 'alice': a tenant {SCOPE_NAME_RULE} (got 'ac')"),
    (TOKEN_RBAC, {"roles_mapping": READERS, "users": [scoped(tenant=7)]}, "tenant: 7",
     f"user 'alice': a tenant {SCOPE_NAME_RULE} (got '7')"),
    (TOKEN_RBAC, {"roles_mapping": READERS, "users": [scoped(databases=["prod", "x"])]}, "- x",
     f"user 'alice': a database {SCOPE_NAME_RULE} (got 'x')"),
    (TOKEN_RBAC, {"roles_mapping": READERS, "users": [scoped(databases=["*", "prod"])]}, "- '*'",
     f"user 'alice': a database {SCOPE_NAME_RULE} (got '*')"),
    (TOKEN_RBAC, {"roles_mapping": READERS, "users": [scoped(databases=["prod", "other", "prod"])]}, "databases:",
     "user 'alice' names a database twice"),
    *[(TOKEN_RBAC, {"roles_mapping": READERS, "users": [scoped(databases=databases)]}, "databases:", NOT_A_LIST)
      for databases in ([], "prod", "*", {"*": 1}, 5, True)],
    (TOKEN_PLAIN, {"users": [scoped(role=None)]}, "tenant: acme",
     "user 'alice' has a tenant, but scoping needs RBAC: the role decides what the user may do in its tenant"),
    (TOKEN_RBAC, {"roles_mapping": READERS, "users": [user(), scoped(name=cr.PROBE_USER, tokens=["P" * 20])]},
     "tenant: acme", "user 'chromactl-probe' has a tenant, but chromactl's probe user proves the server for every tenant"),
    (TOKEN_PLAIN, {"users": [scoped(name=cr.PROBE_USER, role=None)]}, "tenant: acme",
     "user 'chromactl-probe' has a tenant, but chromactl's probe user proves the server for every tenant"),
    (BASIC_RBAC, {"roles_mapping": READERS, "users": [scoped(tokens=None, databases=["prod", "prod"])]}, "databases:",
     "user 'alice' names a database twice"),
])
def test_invalid_authz_is_refused_with_its_line(settings, doc, where, message):
    texts = authz(doc)
    if settings.auth == "basic":
        texts[cr.HTPASSWD_FILE] = f"alice:{HASH}\n"
    with pytest.raises(ProjectFileError) as caught:
        cr.load_credentials(settings, texts)
    assert str(caught.value) == f"authz.yaml:{caught.value.line}: {message}" and caught.value.filename == cr.AUTHZ_FILE
    lines = texts[cr.AUTHZ_FILE].splitlines()
    # the line that holds `where` (the last one: a repeated token is refused where it repeats)
    assert caught.value.line == max(n for n, text in enumerate(lines, 1) if where in text), texts[cr.AUTHZ_FILE]
    assert "T" * 15 not in str(caught.value) and "V" * 15 not in str(caught.value)  # no token in the message


def test_authz_that_is_not_a_mapping_or_not_yaml():
    for text in ("- a\n- b\n", "just text\n"):
        with pytest.raises(ProjectFileError, match="authz.yaml"):
            cr.load_credentials(TOKEN_RBAC, {cr.AUTHZ_FILE: text})


def test_without_rbac_roles_are_neither_needed_nor_read():
    roles_, users = cr.parse_authz(yaml.safe_dump({"users": [user(role="whatever")]}), TOKEN_PLAIN)
    assert roles_ is None and users == [(User("alice", None, tokens=("T" * 20,)), 2)]
    creds = cr.load_credentials(TOKEN_PLAIN, authz({"users": [user(role=None), user(name="bob", role=None, tokens=["U" * 16])]}))
    assert creds == Credentials(users=(User("alice", tokens=("T" * 20,)), User("bob", tokens=("U" * 16,))))


def test_a_valid_authz_loads_with_every_token_and_role():
    doc = {"roles_mapping": {**READERS, "empty": {"actions": []}},
           "users": [user(tokens=["T" * 16, "t" * 16]), user(name="bob", role="empty", tokens=["U" * 40])]}
    creds = cr.load_credentials(TOKEN_RBAC, authz(doc))
    assert creds.roles == {"reader": ("tenant:get_tenant", "db:get_database"), "empty": ()}
    assert creds.users == (User("alice", "reader", tokens=("T" * 16, "t" * 16)), User("bob", "empty", tokens=("U" * 40,)))


# --- the set of files ----------------------------------------------------------------------------


def test_which_files_each_mode_needs_and_a_missing_one():
    assert cr.credential_file_names(TOKEN_RBAC) == cr.credential_file_names(TOKEN_PLAIN) == (cr.AUTHZ_FILE,)
    assert cr.credential_file_names(BASIC_RBAC) == (cr.HTPASSWD_FILE, cr.AUTHZ_FILE)
    assert cr.credential_file_names(BASIC_PLAIN) == (cr.HTPASSWD_FILE,)
    assert cr.credential_file_names(NONE) == ()
    assert cr.load_credentials(NONE, {}) == Credentials()
    with pytest.raises(ChromactlError, match=r"^server.htpasswd is missing \(auth is basic\)") as caught:
        cr.load_credentials(BASIC_PLAIN, {cr.HTPASSWD_FILE: None})
    assert caught.value.hint == "restore it, or run `chromactl init --force`"
    with pytest.raises(ChromactlError, match=r"^authz.yaml is missing \(auth is token, RBAC on\)"):
        cr.load_credentials(TOKEN_RBAC, {})
    assert cr.load_credentials(BASIC_PLAIN, {cr.HTPASSWD_FILE: ""}) == Credentials()


def test_salted_sha1_is_refused_where_chroma_checks_the_passwords_itself():
    with pytest.raises(ProjectFileError, match="hashed for the gateway") as caught:
        cr.load_credentials(BASIC_NATIVE, {cr.HTPASSWD_FILE: f"a:{HASH}\nb:{SSHA}\n"})
    assert caught.value.line == 2 and caught.value.hint == "give it a new one: chromactl creds rotate b"
    assert cr.load_credentials(BASIC_NATIVE, {cr.HTPASSWD_FILE: f"a:{HASH}\n"}).users == (User("a", password_hash=HASH),)
    assert cr.load_credentials(BASIC_PLAIN, {cr.HTPASSWD_FILE: f"b:{SSHA}\n"}).users == (User("b", password_hash=SSHA),)


def test_basic_rbac_joins_passwords_and_roles():
    texts = {cr.HTPASSWD_FILE: f"a:{HASH}\nb:{SSHA}\n",
             **authz({"roles_mapping": READERS, "users": [user("b", tokens=None), user("a", tokens=None)]})}
    creds = cr.load_credentials(BASIC_RBAC, texts)
    assert creds.users == (User("a", "reader", password_hash=HASH), User("b", "reader", password_hash=SSHA))
    assert cr.render_credential_files(creds, BASIC_RBAC) == {
        cr.HTPASSWD_FILE: f"a:{HASH}\nb:{SSHA}\n", cr.AUTHZ_FILE: cr.render_authz(creds, BASIC_RBAC)}
    texts = {cr.HTPASSWD_FILE: f"a:{HASH}\n",
             **authz({"roles_mapping": READERS, "users": [user("a", tokens=None), user("c", tokens=None)]})}
    with pytest.raises(ProjectFileError, match="'c' has no password in server.htpasswd") as caught:
        cr.load_credentials(BASIC_RBAC, texts)
    assert caught.value.filename == cr.AUTHZ_FILE and caught.value.line == 9  # - id: c


def test_authz_header_says_what_chroma_reads_it_for():
    creds = cr.new_credentials(TOKEN_RBAC)
    assert cr.render_authz(creds, TOKEN_RBAC).startswith("# Written by chromactl. Chroma reads it for tokens and roles.\n")
    assert cr.render_authz(Credentials(), TOKEN_PLAIN).startswith("# Written by chromactl. Chroma reads it for tokens.\n")
    assert cr.render_authz(creds, BASIC_RBAC).startswith("# Written by chromactl. Chroma reads it for roles.\n")
    assert "keep it 0600 and out of version control" in cr.render_authz(creds, BASIC_RBAC)
    assert cr.render_credential_files(Credentials(), NONE) == {}
    assert set(cr.render_credential_files(Credentials(), TOKEN_PLAIN)) == {cr.AUTHZ_FILE}
    assert set(cr.render_credential_files(Credentials(), BASIC_PLAIN)) == {cr.HTPASSWD_FILE}


def test_new_credentials_and_their_operations():
    assert cr.new_credentials(TOKEN_RBAC) == Credentials(roles=dict(roles.BUILTIN_ROLES))
    assert cr.new_credentials(TOKEN_PLAIN) == Credentials()
    a, b = User("a", tokens=("1" * 16,)), User("b", tokens=("2" * 16,))
    creds = Credentials().with_user(a).with_user(b)
    assert creds.get("a") == a and creds.get("c") is None
    replaced = creds.with_user(User("a", tokens=("3" * 16,)))
    assert replaced.users == (User("a", tokens=("3" * 16,)), b)  # in place
    assert creds.without("a").users == (b,) and creds.without("c") == creds
    assert User(cr.PROBE_USER).internal and not User("alice").internal


def test_messages_in_full():
    assert cr.password_problem("") == "the password is empty"
    assert cr.password_problem("x" * 20 + "\n") == "a password cannot contain control characters or line breaks"
    assert cr.password_problem("x" * 73) == "bcrypt uses at most 72 bytes of a password; this one is longer"
    assert cr.password_problem("x") == ("a password needs at least 16 characters (or let chromactl generate one: "
                                        "leave it empty)")
    assert cr.token_problem("") == "the token is empty"
    assert cr.token_problem("a b" * 10) == ("Chroma accepts only ASCII letters, digits and punctuation in a token "
                                            "(no spaces)")
    assert cr.token_problem("a") == "a token needs at least 16 characters"
    with pytest.raises(ProjectFileError) as caught:
        cr.parse_htpasswd("a:b:c\n")
    assert str(caught.value) == "server.htpasswd:1: expected exactly one 'user:bcrypt-hash' per line"
    with pytest.raises(ProjectFileError) as caught:
        cr.parse_htpasswd("a:plain\n")
    assert str(caught.value) == "server.htpasswd:1: the password of 'a' is not a bcrypt hash (nor {SSHA})"
    with pytest.raises(ProjectFileError) as caught:
        cr.load_credentials(BASIC_NATIVE, {cr.HTPASSWD_FILE: f"b:{SSHA}\n"})
    assert caught.value.message == ("server.htpasswd:1: the password of 'b' is hashed for the gateway ({SSHA}), "
                                    "which Chroma 0.6 cannot check")
    assert caught.value.filename == cr.HTPASSWD_FILE


def test_authz_yaml_syntax_errors_name_the_file():
    with pytest.raises(ProjectFileError) as caught:
        cr.load_credentials(TOKEN_RBAC, {cr.AUTHZ_FILE: "users: [\n"})
    assert caught.value.filename == cr.AUTHZ_FILE and str(caught.value).startswith("authz.yaml:")


def test_users_of_authz_under_basic_auth_have_no_tokens():
    _, users = cr.parse_authz(yaml.safe_dump({"roles_mapping": READERS, "users": [user(tokens=None)]}), BASIC_RBAC)
    assert users[0][0] == User("alice", "reader") and users[0][0].tokens == ()


def test_authz_is_written_in_a_fixed_block_layout():
    creds = (Credentials(roles={"writer": ("collection:add", "collection:get"), "admin": ("system:reset",)})
             .with_user(User("zed", "writer", tokens=("Z" * 16,))).with_user(User("amy", "admin", tokens=("A" * 16, "B" * 16))))
    assert cr.render_authz(creds, TOKEN_RBAC) == (
        "# Written by chromactl. Chroma reads it for tokens and roles.\n"
        "# Change it with `chromactl creds`; it holds secrets: keep it 0600 and out of version control.\n"
        "roles_mapping:\n"
        "  writer:\n"
        "    actions:\n"
        "    - collection:add\n"
        "    - collection:get\n"
        "  admin:\n"
        "    actions:\n"
        "    - system:reset\n"
        "users:\n"
        "- id: zed\n"
        "  role: writer\n"
        "  tokens:\n"
        "  - ZZZZZZZZZZZZZZZZ\n"
        "- id: amy\n"
        "  role: admin\n"
        "  tokens:\n"
        "  - AAAAAAAAAAAAAAAA\n"
        "  - BBBBBBBBBBBBBBBB\n")


# --- scopes --------------------------------------------------------------------------------------


@pytest.mark.parametrize("scope, tenant, databases", [
    ({}, None, ()),  # server-wide, as every user was before scoping
    ({"tenant": "acme"}, "acme", ()),  # no databases: all of the tenant's, present and future
    ({"tenant": "acme", "databases": None}, "acme", ()),
    ({"tenant": "acme", "databases": ["*"]}, "acme", ()),  # Chroma's own way to say all of them
    ({"tenant": "acme", "databases": ["prod"]}, "acme", ("prod",)),
    ({"tenant": "a.b", "databases": ["prod", "x_y", "0-9"]}, "a.b", ("prod", "x_y", "0-9")),
])
def test_a_scoped_user_loads_with_its_tenant_and_databases(scope, tenant, databases):
    doc = {"roles_mapping": READERS, "users": [{**user(), **scope}, user(name="bob", tokens=["U" * 20])]}
    creds = cr.load_credentials(TOKEN_RBAC, authz(doc))
    assert creds.users == (User("alice", "reader", tokens=("T" * 20,), tenant=tenant, databases=databases),
                           User("bob", "reader", tokens=("U" * 20,)))
    # Under basic auth the scope of authz.yaml joins the password of server.htpasswd.
    doc = {"roles_mapping": READERS, "users": [{**user(tokens=None), **scope}]}
    creds = cr.load_credentials(BASIC_RBAC, {**authz(doc), cr.HTPASSWD_FILE: f"alice:{HASH}\n"})
    assert creds.users == (User("alice", "reader", password_hash=HASH, tenant=tenant, databases=databases),)


def test_scopes_are_written_in_chromas_keys_and_read_back():
    creds = (Credentials(roles={"reader": ("tenant:get_tenant",)})
             .with_user(User("rita", "reader", tokens=("R" * 16,), tenant="acme", databases=("prod", "other")))
             .with_user(User("tom", "reader", tokens=("S" * 16,), tenant="acme"))
             .with_user(User("root", "reader", tokens=("U" * 16,))))
    text = cr.render_authz(creds, TOKEN_RBAC)
    assert text.split("users:\n")[1] == (
        "- id: rita\n"
        "  role: reader\n"
        "  tokens:\n"
        "  - RRRRRRRRRRRRRRRR\n"
        "  tenant: acme\n"
        "  databases:\n"
        "  - prod\n"
        "  - other\n"
        "- id: tom\n"
        "  role: reader\n"
        "  tokens:\n"
        "  - SSSSSSSSSSSSSSSS\n"
        "  tenant: acme\n"
        "  databases:\n"
        "  - '*'\n"
        "- id: root\n"
        "  role: reader\n"
        "  tokens:\n"
        "  - UUUUUUUUUUUUUUUU\n")
    assert cr.load_credentials(TOKEN_RBAC, {cr.AUTHZ_FILE: text}) == creds


CHECK_SCOPE_CASES = [
    (None, (), None), ("acme", (), None), ("acme", ("prod",), None), ("acme", ("prod", "other"), None),
    ("a" * 63, ("b" * 63,), None), ("a.b", ("x_y", "0-9"), None),
    (None, ("prod",), "--database needs --tenant: a database belongs to a tenant"),
    ("ac", (), f"a tenant {SCOPE_NAME_RULE} (got 'ac')"),
    ("a" * 64, (), f"a tenant {SCOPE_NAME_RULE} (got '{'a' * 64}')"),
    ("acme-", ("prod",), f"a tenant {SCOPE_NAME_RULE} (got 'acme-')"),
    ("acme", ("prod", "p"), f"a database {SCOPE_NAME_RULE} (got 'p')"),
    ("acme", ("prod", "b" * 64), f"a database {SCOPE_NAME_RULE} (got '{'b' * 64}')"),
    ("acme", ("_prod",), f"a database {SCOPE_NAME_RULE} (got '_prod')"),
    ("acme", ("prod", "other", "prod"), "a --database is named twice"),
    ("ac", ("prod", "prod"), f"a tenant {SCOPE_NAME_RULE} (got 'ac')"),  # the names first, in order
]


@pytest.mark.parametrize("tenant, databases, message", CHECK_SCOPE_CASES)
def test_a_scope_given_on_the_command_line(tenant, databases, message):
    if message is None:
        assert cr.check_scope(tenant, databases) is None
        return
    with pytest.raises(UsageError) as caught:
        cr.check_scope(tenant, databases)
    assert caught.value.message == message and caught.value.exit_code == 2


def test_a_scope_name_problem_shows_the_name_it_refuses():
    assert cr.scope_name_problem("acme", "tenant") is None
    assert cr.scope_name_problem("no way", "tenant") == f"a tenant {SCOPE_NAME_RULE} (got 'no way')"
    assert cr.scope_name_problem(None, "database") == f"a database {SCOPE_NAME_RULE} (got 'None')"
    assert cr.scope_name_problem("x" * 80, "tenant").endswith(f"(got {repr('x' * 80)[:67]}...)")


# --- passwords checked against their hashes ---------------------------------------------------------


@pytest.mark.parametrize("password, password_hash, matches", [
    ("a-password-of-16+", HASH, True), ("a-password-of-16-", HASH, False), ("", HASH, False),
    ("a-password-of-16+", HASH.replace("$2b$", "$2y$"), True),  # Apache's htpasswd writes $2y$
    ("é-password-of-16+", cr.hash_password("é-password-of-16+", 4), True),  # UTF-8, as Chroma and nginx read it
    ("x" * 72 + "tail", cr.hash_password("x" * 72, 4), True),  # bcrypt reads 72 bytes (bcrypt 5 raises past them)
    ("generated-password-xxxxx", SSHA, True), ("generated-password-xxxxy", SSHA, False),
    ("é" * 16, cr.hash_generated("é" * 16, BASIC_RBAC), True),
    # Not a hash, or a damaged one: never a match, never an exception.
    ("anything", None, False), ("", "", False), ("plain-text-secret", "plain-text-secret", False),
    ("a-password-of-16+", HASH.replace("$04$", "$03$"), False),  # bcrypt's shape, a cost bcrypt refuses
    ("a-password-of-16+", HASH[:-1], False),
    ("generated-password-xxxxx", SSHA[:-1], False),  # padding cut: not base64
    ("generated-password-xxxxx", SSHA[:12] + "!" + SSHA[12:], False),  # a stray character: not base64
    ("generated-password-xxxxx", "{SSHA}", False),
])
def test_password_matches_its_hash_as_the_server_checks_it(password, password_hash, matches):
    assert cr.password_matches(password, password_hash) is matches


def test_a_chosen_password_gets_the_projects_cost_natively_and_salted_sha1_behind_the_gateway():
    native = resolve_settings({"auth": "basic", "image": "chromadb/chroma:0.6.3", "bcrypt_rounds": 5}, None,
                              folder_name="p")
    chosen = cr.hash_password_for("a-password-of-16+", native, generated=False)
    generated = cr.hash_password_for("a-password-of-16+", native, generated=True)
    assert cr.hash_cost(chosen) == 5 and cr.hash_cost(generated) == cr.GENERATED_ROUNDS
    assert cr.password_matches("a-password-of-16+", chosen) and cr.password_matches("a-password-of-16+", generated)
    behind = cr.hash_password_for("a-password-of-16+", BASIC_RBAC, generated=False)
    assert behind.startswith("{SSHA}") and cr.password_matches("a-password-of-16+", behind)


# --- digests of what grants access -------------------------------------------------------------------


def test_a_digest_changes_with_everything_that_grants_access_and_holds_no_secret():
    alice = User("alice", "reader", tokens=("T" * 20,), tenant="acme", databases=("prod",))
    [digest] = cr.credential_digests(Credentials(users=(alice,)))
    assert cr.credential_digests(Credentials(users=(replace(alice),))) == {digest}  # the same grant, the same digest
    assert "T" * 20 not in digest and len(digest) == 64
    changed = [replace(alice, name="alicia"), replace(alice, role="writer"), replace(alice, tokens=("T" * 20, "U" * 20)),
               replace(alice, tenant="beta"), replace(alice, databases=("prod", "other")), replace(alice, databases=()),
               replace(alice, tenant=None, databases=()), replace(alice, tenant="None", databases=())]
    digests = [cr.credential_digests(Credentials(users=(u,))) for u in changed]
    assert all(digest not in d for d in digests) and len(set().union(*digests)) == len(changed)
    hashed = User("bob", "reader", password_hash=HASH)
    assert cr.credential_digests(Credentials(users=(hashed,))) != cr.credential_digests(
        Credentials(users=(replace(hashed, password_hash=SSHA),)))
    assert len(cr.credential_digests(Credentials(users=(alice, hashed)))) == 2
