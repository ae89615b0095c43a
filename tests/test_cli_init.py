import json
import stat

import yaml
from dotenv import dotenv_values

from conftest import ok, snapshot, document


def mode(path):
    return stat.S_IMODE(path.stat().st_mode)


def test_init_defaults_write_every_file(chromactl):
    result = ok(chromactl("init", "--json"))
    doc = document(result, "init")
    project = chromactl.project
    assert set(doc) == {"schema_version", "command", "project", "name", "reinitialised", "user", "role", "secret",
                        "kept_users", "backups"}
    assert doc["reinitialised"] is False and doc["kept_users"] == [] and doc["name"] == "proj"
    assert doc["project"] == str(project) and doc["user"] == "admin" and doc["role"] == "admin"
    assert len(doc["secret"]) >= 32 and doc["secret"].isalnum()

    settings = yaml.safe_load((project / "chromactl.yaml").read_text())
    assert settings == {"name": "proj", "auth": "token", "rbac": True, "token_header": "Authorization",
                        "image": "chromadb/chroma:1.5.9", "host": "0.0.0.0", "port": 8000, "bcrypt_rounds": 6,
                        "gateway": "nginx", "gateway_image": "nginx:1.27.5",  # current Chroma, behind the gateway
                        # published beyond loopback: TLS with a CA of the project's own
                        "tls": "auto", "tls_san": [], "tls_cert": None, "tls_key": None, "tls_ca": None}
    authz = yaml.safe_load((project / "authz.yaml").read_text())
    admin = next(u for u in authz["users"] if u["id"] == "admin")
    assert admin == {"id": "admin", "role": "admin", "tokens": [doc["secret"]]}
    # Behind the gateway Chroma runs without auth of its own, on a network only the gateway reaches.
    assert dotenv_values(project / ".chroma_env") == {"ANONYMIZED_TELEMETRY": "False"}
    for secret_file in ("authz.yaml", ".chroma_env", ".chromactl/probe-secret"):
        assert mode(project / secret_file) == 0o600, secret_file
    assert not (project / "server.htpasswd").exists()
    gitignore = (project / ".gitignore").read_text().splitlines()
    assert {"server.htpasswd", "authz.yaml", ".chromactl/"} <= set(gitignore)
    # Nothing secret is left behind in temporary files.
    assert not [p for p in project.rglob("*.tmp")]


def test_human_output_shows_the_secret_once_and_nothing_on_stderr(chromactl):
    result = ok(chromactl("init"))
    token = yaml.safe_load((chromactl.project / "authz.yaml").read_text())["users"][1]["tokens"][0]
    assert result.stdout.count(token) == 1
    assert token not in result.stderr


def test_basic_auth_with_password_from_stdin(chromactl):
    result = ok(chromactl("init", "--auth", "basic", "--image", "chromadb/chroma:0.6.3", "--password-stdin", "--json",
                          input="open sesame:42 and more\n"))
    doc = document(result)
    assert doc["secret"] == "open sesame:42 and more"
    lines = (chromactl.project / "server.htpasswd").read_text().splitlines()
    assert [line.split(":")[0] for line in lines] == ["chromactl-probe", "admin"]
    costs = [line.split(":")[1][:7] for line in lines]
    assert costs == ["$2b$04$", "$2b$06$"]  # the probe's generated password; the admin's chosen one
    assert mode(chromactl.project / "server.htpasswd") == 0o600
    authz = yaml.safe_load((chromactl.project / "authz.yaml").read_text())
    assert {u["id"]: u["role"] for u in authz["users"]} == {"chromactl-probe": "chromactl-probe", "admin": "admin"}


def test_auth_none_defaults_to_loopback_and_writes_no_credentials(chromactl):
    result = ok(chromactl("init", "--auth", "none", "--json"))
    assert document(result)["secret"] is None
    settings = yaml.safe_load((chromactl.project / "chromactl.yaml").read_text())
    assert settings["host"] == "127.0.0.1" and settings["rbac"] is False
    assert not (chromactl.project / "authz.yaml").exists()


def test_environment_variables_sit_between_flags_and_defaults(chromactl):
    ok(chromactl("init", "--port", "9001", env={"CHROMACTL_PORT": "9002", "CHROMACTL_AUTH": "basic",
                                               "CHROMACTL_BCRYPT_ROUNDS": "10"}))
    settings = yaml.safe_load((chromactl.project / "chromactl.yaml").read_text())
    assert settings["port"] == 9001 and settings["auth"] == "basic"


def test_dir_option_and_env_var_create_the_project_elsewhere(chromactl, tmp_path):
    ok(chromactl("-C", str(tmp_path / "a" / "b"), "init", "--auth", "none"))
    assert (tmp_path / "a" / "b" / "chromactl.yaml").exists()
    ok(chromactl("init", "--auth", "none", env={"CHROMACTL_DIR": str(tmp_path / "c")}))
    assert (tmp_path / "c" / "chromactl.yaml").exists()


def test_existing_project_is_not_overwritten(chromactl):
    ok(chromactl("init"))
    before = snapshot(chromactl.project)
    result = chromactl("init", "--port", "9999")
    assert result.returncode == 1
    assert "already a chromactl project" in result.stderr and "--force" in result.stderr
    assert snapshot(chromactl.project) == before


def test_force_keeps_users_and_their_secrets(chromactl):
    first = document(ok(chromactl("init", "--image", "chromadb/chroma:0.6.3", "--json")))
    ok(chromactl("creds", "add", "alice", "--role", "writer"))
    before = yaml.safe_load((chromactl.project / "authz.yaml").read_text())
    result = document(ok(chromactl("init", "--force", "--port", "9100", "--token-header", "X-Chroma-Token",
                                     "--json")))
    assert result["secret"] is None and result["kept_users"] == ["admin", "alice"]
    after = yaml.safe_load((chromactl.project / "authz.yaml").read_text())
    assert after["users"] == before["users"]
    assert first["secret"] in after["users"][1]["tokens"]
    assert yaml.safe_load((chromactl.project / "chromactl.yaml").read_text())["port"] == 9100
    assert dotenv_values(chromactl.project / ".chroma_env")["CHROMA_AUTH_TOKEN_TRANSPORT_HEADER"] == "X-Chroma-Token"


def test_force_turning_rbac_on_keeps_full_access(chromactl):
    ok(chromactl("init", "--no-rbac"))
    ok(chromactl("creds", "add", "bob"))
    ok(chromactl("init", "--force", "--rbac"))
    authz = yaml.safe_load((chromactl.project / "authz.yaml").read_text())
    assert {u["id"]: u["role"] for u in authz["users"]} == {"chromactl-probe": "chromactl-probe", "admin": "admin",
                                                           "bob": "admin"}
    assert "reader" in authz["roles_mapping"]


def test_force_changing_auth_mode_backs_up_old_credentials(chromactl):
    ok(chromactl("init"))
    old = (chromactl.project / "authz.yaml").read_text()
    result = document(ok(chromactl("init", "--force", "--auth", "basic", "--no-rbac", "--json",
                                     env={"CHROMACTL_BCRYPT_ROUNDS": "10"})))
    assert result["user"] == "admin" and result["secret"]
    [backup] = result["backups"]
    assert (chromactl.project / backup).read_text() == old
    assert mode(chromactl.project / backup) == 0o600
    assert not (chromactl.project / "authz.yaml").exists()  # basic without RBAC reads no authz.yaml
    assert (chromactl.project / "server.htpasswd").exists()


def test_force_on_broken_credentials_refuses_instead_of_dropping_them(chromactl):
    ok(chromactl("init"))
    (chromactl.project / "authz.yaml").write_text("users: [\n")
    before = snapshot(chromactl.project)
    result = chromactl("init", "--force", "--auth", "basic")
    assert result.returncode == 1 and "authz.yaml:" in result.stderr
    assert snapshot(chromactl.project) == before


def test_gitignore_is_appended_not_replaced(chromactl):
    (chromactl.project / ".gitignore").write_text("node_modules/\nauthz.yaml")
    ok(chromactl("init"))
    lines = (chromactl.project / ".gitignore").read_text().splitlines()
    assert lines[:2] == ["node_modules/", "authz.yaml"]
    assert lines.count("authz.yaml") == 1 and "server.htpasswd" in lines


def test_bad_input_changes_nothing(chromactl):
    cases = [
        (["init", "--port", "0"], "invalid port"),
        (["init", "--host", "example"], "invalid host"),
        (["init", "--auth", "none", "--rbac"], "RBAC needs authentication"),
        (["init", "--auth", "basic", "--token-header", "X-Chroma-Token"], "token auth only"),
        (["init", "--password-stdin"], "only basic auth"),
        (["init", "--auth", "basic", "--password-stdin"], "standard input is empty"),
        (["init", "--name", "bad/name"], "invalid name"),
    ]
    for args, message in cases:
        result = chromactl(*args, input="")
        assert result.returncode == 2, (args, result.returncode)  # every one a value that cannot be used
        assert message in result.stderr, (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert list(chromactl.project.iterdir()) == [], args


def test_unknown_auth_mode_is_a_usage_error(chromactl):
    result = chromactl("init", "--auth", "kerberos")
    assert result.returncode == 2 and "kerberos" in result.stderr
    assert list(chromactl.project.iterdir()) == []


def test_unwritable_folder(chromactl):
    import os
    import shutil
    import tempfile
    from pathlib import Path

    from conftest import run_chromactl
    if os.geteuid() == 0:  # root writes anywhere: run as nobody in a folder it may enter but not write
        folder = Path(tempfile.mkdtemp(prefix="chromactl-ro-"))
        try:
            folder.chmod(0o755)
            result = run_chromactl("init", cwd=folder, user="65534")
            assert list(folder.iterdir()) == []
        finally:
            shutil.rmtree(folder)
    else:
        chromactl.project.chmod(0o555)
        result = chromactl("init")
        assert list(chromactl.project.iterdir()) == []
    assert result.returncode == 1, result.stderr
    assert "cannot write" in result.stderr and "permission denied" in result.stderr


def _cost(project, user="admin"):
    line = next(l for l in (project / "server.htpasswd").read_text().splitlines() if l.startswith(user + ":"))
    return int(line.split("$")[2])


def test_bcrypt_rounds_apply_to_the_first_admin_and_probe(chromactl, tmp_path):
    """--bcrypt-rounds (and CHROMACTL_BCRYPT_ROUNDS) reach init, and the init that `up` runs.
    They set the cost of chosen passwords; generated ones always use 4."""
    ok(chromactl("init", "--auth", "basic", "--image", "chromadb/chroma:0.6.3", "--bcrypt-rounds", "10",
                 "--password-stdin", input="the admin chose this\n"))
    assert _cost(chromactl.project) == 10 and _cost(chromactl.project, "chromactl-probe") == 4
    assert yaml.safe_load((chromactl.project / "chromactl.yaml").read_text())["bcrypt_rounds"] == 10

    from conftest import run_chromactl

    by_env = tmp_path / "by-env"
    by_env.mkdir()
    ok(run_chromactl("init", "--auth", "basic", "--image", "chromadb/chroma:0.6.3", "--password-stdin", cwd=by_env,
                     env={"CHROMACTL_BCRYPT_ROUNDS": "11"}, input="the admin chose this\n"))
    assert _cost(by_env) == 11

    # `up` in an empty folder creates the project first (then cannot reach an engine here).
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run_chromactl("up", cwd=empty, env={"CHROMACTL_AUTH": "basic", "CHROMACTL_BCRYPT_ROUNDS": "10",
                                                 "DOCKER_HOST": "unix:///nonexistent/docker.sock"})
    assert result.returncode == 3, result.stderr
    assert yaml.safe_load((empty / "chromactl.yaml").read_text())["bcrypt_rounds"] == 10
    htpasswd = (empty / "server.htpasswd").read_text()
    assert htpasswd.count(":{SSHA}") == 2  # both generated, checked by the gateway only
    assert "Next: chromactl up" not in result.stdout  # it is what is running
    assert "password of user 'admin'" in result.stdout


def test_force_with_another_image_derives_its_gateway_again(chromactl):
    ok(chromactl("init", "--image", "chromadb/chroma:0.6.3"))
    settings = lambda: yaml.safe_load((chromactl.project / "chromactl.yaml").read_text())  # noqa: E731
    assert settings()["gateway"] == "none"
    ok(chromactl("init", "--force", "--image", "chromadb/chroma:latest"))
    assert settings()["gateway"] == "nginx"  # derived for the new image, not kept from the old
    ok(chromactl("init", "--force", "--image", "chromadb/chroma:0.6.3"))
    assert settings()["gateway"] == "none"
    # A choice the operator made is kept.
    ok(chromactl("init", "--force", "--gateway", "nginx"))
    ok(chromactl("init", "--force", "--image", "chromadb/chroma:0.6.2"))
    assert settings()["gateway"] == "nginx"


def test_force_to_auth_none_derives_rbac_and_address_again(chromactl):
    ok(chromactl("init"))
    ok(chromactl("init", "--force", "--auth", "none"))
    settings = yaml.safe_load((chromactl.project / "chromactl.yaml").read_text())
    assert settings["rbac"] is False and settings["host"] == "127.0.0.1"


def test_force_keeps_the_variables_an_operator_added_to_the_env_file(chromactl):
    ok(chromactl("init", "--image", "chromadb/chroma:0.6.3"))
    env = chromactl.project / ".chroma_env"
    env.write_text(env.read_text() + "CHROMA_SERVER_CORS_ALLOW_ORIGINS=[\"https://app.example\"]\nRUST_LOG=warn\n")
    ok(chromactl("init", "--force", "--image", "chromadb/chroma:1.5.9"))  # auth variables go, the gateway's come
    values = dotenv_values(env)
    assert values["CHROMA_SERVER_CORS_ALLOW_ORIGINS"] == '["https://app.example"]' and values["RUST_LOG"] == "warn"
    assert "CHROMA_SERVER_AUTHN_PROVIDER" not in values and values["ANONYMIZED_TELEMETRY"] == "False"
