"""Dependencies point dispatcher -> common <- executor (STYLE.md section 1), checked with ast."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# package -> top-level modules it must never import
FORBIDDEN = {
    "common": {"dispatcher", "executor", "fastapi", "sqlite3", "psycopg"},
    "dispatcher": {"executor"},
    "executor": {"dispatcher"},
}


def _imports(source: str, package: str) -> list[tuple[str, int]]:
    """Top-level module names a module of ``package`` imports, anywhere, with line numbers."""
    found: list[tuple[str, int]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.extend((alias.name.partition(".")[0], node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            # A relative import stays inside its own package.
            module = package if node.level else (node.module or "")
            found.append((module.partition(".")[0], node.lineno))
    return found


def _violations(package: str) -> list[str]:
    files = sorted((REPO / package).rglob("*.py"))
    assert files, f"no modules found under {package}/"
    return [
        f"{path.relative_to(REPO)}:{line} imports {module}"
        for path in files
        for module, line in _imports(path.read_text(), package)
        if module in FORBIDDEN[package]
    ]


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_only_what_the_layering_allows(package: str) -> None:
    violations = _violations(package)

    assert not violations, "forbidden imports:\n" + "\n".join(violations)


def test_imports_inside_functions_and_submodules_are_seen() -> None:
    # A lazy import is still a dependency, and so is one of a submodule.
    source = (
        "import os.path\n"
        "def f():\n"
        "    import executor.runner\n"
        "    from dispatcher.cli.main import main\n"
        "from . import sibling\n"
    )

    assert _imports(source, "common") == [
        ("os", 1),
        ("common", 5),
        ("executor", 3),
        ("dispatcher", 4),
    ]


def _modules_imported(path: Path) -> list[tuple[str, int]]:
    """Full dotted names of what a module imports (``from a import b`` counts as ``a.b``)."""
    found: list[tuple[str, int]] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.extend((alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.extend((f"{node.module}.{alias.name}", node.lineno) for alias in node.names)
    return found


# folder -> dotted prefixes its modules must never import: the store knows nothing of the
# broker, the API or the CLI; the shared SQL logic no dialect; the dialects not each other.
STORE_FORBIDDEN = {
    "dispatcher/store": (
        "dispatcher.amqp",
        "dispatcher.api",
        "dispatcher.cli",
        "dispatcher.service",
        "dispatcher.client",
        "dispatcher.settings",
    ),
    "dispatcher/store/sql": ("dispatcher.store.sqlite", "dispatcher.store.postgres"),
    "dispatcher/store/sqlite": ("dispatcher.store.postgres",),
    "dispatcher/store/postgres": ("dispatcher.store.sqlite",),
}


@pytest.mark.parametrize("folder", sorted(STORE_FORBIDDEN))
def test_the_store_and_its_dialects_import_only_what_the_layering_allows(folder: str) -> None:
    prefixes = STORE_FORBIDDEN[folder]
    violations = [
        f"{path.relative_to(REPO)}:{line} imports {module}"
        for path in sorted((REPO / folder).rglob("*.py"))
        for module, line in _modules_imported(path)
        if any(module == p or module.startswith(f"{p}.") for p in prefixes)
    ]

    assert not violations, "forbidden imports:\n" + "\n".join(violations)


def test_a_from_import_counts_as_the_submodule(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("from dispatcher.store import sqlite\nimport dispatcher.amqp.results\n")

    assert _modules_imported(module) == [
        ("dispatcher.store.sqlite", 1),
        ("dispatcher.amqp.results", 2),
    ]
