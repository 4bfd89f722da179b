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


def test_all_is_sorted() -> None:
    assert common.__all__ == sorted(common.__all__, key=_isort_key)


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
