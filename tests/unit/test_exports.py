"""common's public surface: a sorted __all__ that covers everything the services import."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import common

REPO = Path(__file__).resolve().parents[2]
SERVICES = ("dispatcher", "executor", "examples")


def _names_imported_from_common() -> dict[str, list[str]]:
    """Each name imported with ``from common import X`` in the services, with where."""
    found: dict[str, list[str]] = {}
    for package in SERVICES:
        for path in sorted((REPO / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and node.module == "common" and not node.level:
                    for alias in node.names:
                        where = f"{path.relative_to(REPO)}:{node.lineno}"
                        found.setdefault(alias.name, []).append(where)
    return found


def _isort_key(name: str) -> tuple[int, str]:
    # ruff's RUF022 order: SCREAMING_SNAKE_CASE, then CamelCase, then everything else.
    if name.isupper():
        return (0, name)
    return (1 if name[0].isupper() else 2, name)


def _audience_groups() -> list[list[str]]:
    """The lists ``common/__init__.py`` builds ``__all__`` from, one per audience, in order."""
    groups: list[list[str]] = []
    for node in ast.parse((REPO / "common" / "__init__.py").read_text()).body:
        target: ast.expr
        if isinstance(node, ast.AugAssign):
            target, value = node.target, node.value
        elif isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        else:
            continue
        if isinstance(target, ast.Name) and target.id == "__all__":
            assert isinstance(value, ast.List)
            groups.append([ast.literal_eval(item) for item in value.elts])
    return groups


def test_all_is_grouped_by_audience_and_sorted_within_each_group() -> None:
    groups = _audience_groups()

    assert len(groups) >= 4, "wire, task authors, errors, settings, runtime"
    assert [name for group in groups for name in group] == common.__all__
    for group in groups:
        assert group == sorted(group, key=_isort_key)


def test_all_has_no_duplicates() -> None:
    assert len(set(common.__all__)) == len(common.__all__)


def test_every_exported_name_exists() -> None:
    missing = [name for name in common.__all__ if not hasattr(common, name)]

    assert not missing, f"in common.__all__ but not defined: {missing}"


def test_services_import_only_exported_names_from_common() -> None:
    imported = _names_imported_from_common()
    assert imported, "the services import nothing from common: is the walk broken?"

    # Submodules (``from common import exit_codes``) are modules, not re-exported names.
    unexported = {
        name: where
        for name, where in imported.items()
        if not name.startswith("_")
        and name not in common.__all__
        and importlib.util.find_spec(f"common.{name}") is None
    }

    assert not unexported, f"imported from common but not in __all__: {unexported}"


def test_no_private_names_are_imported_from_common() -> None:
    private = {
        name: where for name, where in _names_imported_from_common().items() if name[0] == "_"
    }

    assert not private


# Modules of common the services may import as modules: runtime adapters and the exit codes.
# Everything else comes from ``common`` itself, so that its __all__ is the whole surface.
DEEP_IMPORTS_ALLOWED = {
    "asyncapi",
    "exit_codes",
    "logging",
    "loop",
    "pika_link",
    "pika_properties",
    "readiness",
    "shutdown",
}


def _deep_imports() -> dict[str, list[str]]:
    """Each ``common.<module>`` the services import directly, with where."""
    found: dict[str, list[str]] = {}
    for package in SERVICES:
        for path in sorted((REPO / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                where = f"{path.relative_to(REPO)}:{getattr(node, 'lineno', 0)}"
                if isinstance(node, ast.ImportFrom) and not node.level and node.module:
                    modules = [node.module]
                    if node.module == "common":
                        modules = [f"common.{alias.name}" for alias in node.names]
                elif isinstance(node, ast.Import):
                    modules = [alias.name for alias in node.names]
                else:
                    continue
                for module in modules:
                    parts = module.split(".")
                    submodule = ".".join(parts[:2])
                    if (
                        parts[0] == "common"
                        and len(parts) > 1
                        and importlib.util.find_spec(submodule)
                    ):
                        found.setdefault(parts[1], []).append(where)
    return found


def test_services_import_common_modules_only_from_the_allowlist() -> None:
    deep = _deep_imports()
    assert "logging" in deep, "no deep import found at all: is the walk broken?"

    refused = {
        module: where for module, where in deep.items() if module not in DEEP_IMPORTS_ALLOWED
    }

    assert not refused, f"import these from common instead: {refused}"


def test_the_dispatcher_exports_the_producer_api_the_readme_documents() -> None:
    import dispatcher

    readme = (REPO / "README.md").read_text()

    assert dispatcher.__all__ == sorted(dispatcher.__all__, key=_isort_key)
    assert all(hasattr(dispatcher, name) for name in dispatcher.__all__)
    for name in ("open_dispatcher", "SyncDispatcher", "TaskRequest", "TaskRecord"):
        assert name in dispatcher.__all__
    assert "from dispatcher import open_dispatcher, SyncDispatcher" in readme
