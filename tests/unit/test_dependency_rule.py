"""The dependency rule, checked on the source (docs/architecture.md, "Dependency rule").

Every ``import`` statement of the seven top-level packages is read with :mod:`ast` — module level,
inside functions and under ``TYPE_CHECKING`` alike, relative imports resolved — and each import of
another of our packages must go down the plan:

    api ─> bootstrap ─> consumers ─> commands, projections ─> infra ─> domain

``domain`` imports nothing of ours and no I/O library; ``commands`` and ``projections`` do not
know each other; nothing imports ``api``; only ``api`` imports ``bootstrap`` (the composition
root, which wires everything below it). A new top-level package fails the test until it is given
its place in ``ALLOWED``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: package -> the packages of ours it may import (besides itself).
ALLOWED: dict[str, frozenset[str]] = {
    "domain": frozenset(),
    "infra": frozenset({"domain"}),
    "commands": frozenset({"domain", "infra"}),
    "projections": frozenset({"domain", "infra"}),
    "consumers": frozenset({"commands", "projections", "domain", "infra"}),
    "bootstrap": frozenset({"consumers", "commands", "projections", "domain", "infra"}),
    "api": frozenset({"bootstrap", "consumers", "commands", "projections", "domain", "infra"}),
}

#: Libraries that do I/O (files, network, databases, processes, threads, logs): not in ``domain``.
IO_MODULES = frozenset(
    {
        "asyncio",
        "eventsourcing.application",
        "eventsourcing.persistence",
        "eventsourcing.popo",
        "eventsourcing.postgres",
        "eventsourcing.sqlite",
        "fastapi",
        "httpx",
        "io",
        "kafka",
        "logging",
        "os",
        "pathlib",
        "psycopg",
        "psycopg_pool",
        "shutil",
        "socket",
        "sqlite3",
        "starlette",
        "structlog",
        "subprocess",
        "threading",
        "time",
        "urllib",
    }
)


def packages() -> list[str]:
    """Top-level packages of the repository (folders with an ``__init__.py``), tests aside."""
    return sorted(
        path.parent.name
        for path in ROOT.glob("*/__init__.py")
        if path.parent.name not in {"tests"} and not path.parent.name.startswith(".")
    )


def imported_modules(path: Path, root: Path = ROOT) -> Iterator[tuple[int, str]]:
    """``(line, absolute module name)`` of every import in the file at ``path`` under ``root``."""
    package = path.relative_to(root).parts[:-1]  # what ``from . import x`` means there
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                base = node.module or ""
            else:
                anchor = package[: len(package) - node.level + 1]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            if base:
                yield node.lineno, base
            else:  # ``from .. import api`` at the top of a package
                yield from ((node.lineno, alias.name) for alias in node.names)


def violations(root: Path = ROOT) -> list[str]:
    """Each import that breaks the rule, as ``file:line: package -> module``."""
    found: list[str] = []
    for package, allowed in ALLOWED.items():
        for path in sorted((root / package).rglob("*.py")):
            for line, module in imported_modules(path, root):
                top = module.split(".")[0]
                where = f"{path.relative_to(root)}:{line}: {package} -> {module}"
                if top in ALLOWED and top != package and top not in allowed:
                    found.append(where)
                elif package == "domain" and is_io(module):
                    found.append(f"{where} (I/O)")
    return sorted(set(found))


def is_io(module: str) -> bool:
    return any(module == io or module.startswith(f"{io}.") for io in IO_MODULES)


def test_every_package_has_a_place_in_the_rule() -> None:
    assert packages() == sorted(ALLOWED)


def test_no_import_goes_up_the_plan() -> None:
    assert violations() == []


@pytest.mark.parametrize(
    ("package", "statement"),
    [
        ("domain", "from infra.store import EventStore"),
        ("domain", "import sqlite3"),
        ("infra", "from commands import service"),
        ("commands", "import projections.framework"),
        ("projections", "from commands.service import CommandService"),
        ("consumers", "from api.bootstrap import build"),
        ("consumers", "from ..api import bootstrap"),
        ("consumers", "from .. import api"),
        ("domain", "def later() -> None:\n    from consumers import relay\n"),
    ],
)
def test_an_upward_import_is_caught(tmp_path: Path, package: str, statement: str) -> None:
    for name in ALLOWED:
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text("")
    (tmp_path / package / "bad.py").write_text(statement + "\n")
    assert [v.split(":")[0] for v in violations(tmp_path)] == [f"{package}/bad.py"]
