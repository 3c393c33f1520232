"""The package layout of docs/architecture.md: imports run one way, only api/ imports aiohttp, no module
grows past 400 lines, and the public library API is importable from ``bulkops``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "bulkops"
GROUND = {"errors", "model", "config", "log", "spool"}
# what each part may import besides itself and the ground floor
ALLOWED: dict[str, set[str]] = {
    "v7": set(),
    "odata": {"v7"},
    "api": {"odata", "v7"},
    "journal": set(),
    "job": {"api", "odata", "v7"},
    "plan": {"job", "journal", "api", "odata", "v7"},
    "apply": {"plan", "job", "journal", "api", "odata", "v7"},
    "schedule": {"apply", "plan", "job", "journal", "api", "odata", "v7"},
    "cli": {"schedule", "apply", "plan", "job", "journal", "api", "odata", "v7", "sim"},
    "sim": {"odata", "v7"},
}
MAX_LINES = 400


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _part(path: Path) -> str:
    rel = path.relative_to(PACKAGE).with_suffix("").parts
    return rel[0]


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            if node.module == "bulkops":
                found.update(f"bulkops.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return found


def test_imports_run_one_way() -> None:
    """Every bulkops module imports only the parts below it (the rule drawn in docs/architecture.md)."""
    wrong = []
    for path in _modules():
        part = _part(path)
        if part in GROUND or part in {"__init__", "__main__"}:
            allowed = GROUND | set(ALLOWED) if part in {"__init__", "__main__"} else GROUND
        else:
            allowed = GROUND | ALLOWED[part] | {part}
        for name in _imports(path):
            if not name.startswith("bulkops."):
                continue
            used = name.split(".")[1]
            if used not in allowed and not (part in GROUND and used in GROUND):
                wrong.append(f"{path.relative_to(ROOT)} imports {name}")
    assert wrong == []


def test_only_api_imports_aiohttp() -> None:
    """aiohttp is imported by bulkops/api/ and the simulator only."""
    users = {str(p.relative_to(ROOT)) for p in _modules()
             if any(n == "aiohttp" or n.startswith("aiohttp.") for n in _imports(p))
             and _part(p) not in {"api", "sim"}}
    assert users == set()


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_module_size(path: Path) -> None:
    """No module of the package is over 400 lines."""
    assert len(path.read_text().splitlines()) <= MAX_LINES


def test_public_api() -> None:
    """The library API named in the README is importable from the package root."""
    import bulkops  # noqa: PLC0415 - the import is the test

    for name in ("load_job", "make_plan", "apply_plan", "new_run", "open_client", "read_plan",
                 "make_undo_plan", "check_apply", "run_plan", "retry_plan", "write_plan"):
        assert callable(getattr(bulkops, name)), name
