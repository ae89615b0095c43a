"""The shape of the code, kept by tests: commands are leaves (no command module imports
another), nothing imports upward to dodge a cycle inside a function, only one module
imports the Docker SDK, and only the CLI imports typer."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "chromactl"
MODULES = sorted(p for p in PACKAGE.rglob("*.py") if p.name != "__main__.py")


def imports(path: Path, *, inside_functions: bool | None = None) -> list[str]:
    """The modules a file imports (absolute names); only those inside function bodies, or
    only those at module level, when asked."""
    tree = ast.parse(path.read_text())
    found = []
    nested = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            nested.update(id(n) for n in ast.walk(node) if isinstance(n, (ast.Import, ast.ImportFrom)))
    for node in ast.walk(tree):
        if not isinstance(node, (ast.Import, ast.ImportFrom)):
            continue
        if inside_functions is not None and (id(node) in nested) != inside_functions:
            continue
        if isinstance(node, ast.ImportFrom) and node.module:
            found.append(node.module)
            found.extend(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
    return found


@pytest.mark.parametrize("path", sorted((PACKAGE / "commands").glob("*.py")), ids=lambda p: p.name)
def test_commands_are_leaves(path):
    others = [name for name in imports(path) if name.startswith("chromactl.commands")]
    assert others == [], f"{path.name} imports another command: {others}"


@pytest.mark.parametrize("path", [p for p in MODULES if p.name != "cli.py"], ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_import_hides_inside_a_function(path):
    """The CLI imports inside its commands on purpose (fast --help, no SDK for commands
    that need none); everywhere else an import inside a function would be hiding a cycle."""
    assert [n for n in imports(path, inside_functions=True) if n.startswith("chromactl")] == []


def test_only_the_engine_adapter_imports_the_docker_sdk_and_only_the_cli_imports_typer():
    docker_users = {p.name for p in MODULES if any(n == "docker" or n.startswith("docker.") for n in imports(p))}
    typer_users = {p.name for p in MODULES if any(n == "typer" or n.startswith("typer.") for n in imports(p))}
    assert docker_users == {"engine.py"} and typer_users == {"cli.py"}
