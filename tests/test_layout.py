"""The layering rule of DESIGN §4: imports only point down, lazy ones (inside functions) included.

    cli → quality → report → public API (dropin, package __init__, api) → engine, zoo,
    integrations → presets (published schedules, values) → models, schedule → solvers (the
    registry a schedule checks its solver against) → ops, dp, grid, metrics → native → csrc (_C),
    _version, files

A module may import modules of a lower layer and, within its own subpackage (engine/, models/,
ops/, zoo/), its siblings. reference.py imports nothing of ours. One upward import is allowed by
name, inside a function only (DELEGATIONS).
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "oss_fast"

LAYERS = {  # top-level module or subpackage -> layer (higher may import lower)
    "_C": 0, "_version": 0, "progress": 0, "files": 0,
    "native": 1,
    "grid": 2, "ops": 2, "dp": 2, "metrics": 2,
    "solvers": 2.5,
    "models": 3, "schedule": 3,
    "presets": 3.5,
    "engine": 4, "zoo": 4, "integrations": 4,
    "api": 5, "dropin": 6, "__init__": 7,
    "report": 8, "quality": 9, "cli": 10, "__main__": 11,
}

# module -> the higher module it may import inside a function: Schedule keeps its diffusers methods
# (schedule.applied(pipe), ...) for its users, and they delegate to the hand-off, which imports schedule
DELEGATIONS = {"oss_fast.schedule": "oss_fast.integrations.diffusers"}


def unit_of(module: str) -> str:
    """'oss_fast.engine.search' -> 'engine'; 'oss_fast' -> '__init__'."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path, source: str | None = None):
    """Every module of ours that the file (or `source` read as that file) imports, anywhere in it,
    as absolute dotted names."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text() if source is None else source)):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.split(".")[0] == "oss_fast")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "oss_fast":
                continue
            for alias in node.names:  # `from . import dp` imports the module oss_fast.dp
                candidate = f"{target}.{alias.name}"
                rel = Path(*candidate.split(".")[1:])
                is_module = (PACKAGE / rel).with_suffix(".py").exists() or (PACKAGE / rel).is_dir()
                yield candidate if is_module or alias.name == "_C" else target


SOURCES = sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def test_every_module_has_a_layer():
    assert {unit_of(module_name(p)) for p in SOURCES} - {"reference"} <= set(LAYERS)


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_down(path):
    me = module_name(path)
    mine = unit_of(me)
    for target in imported_modules(path):
        if mine == "reference":
            pytest.fail(f"reference.py imports {target}: the oracle must import nothing of ours")
        theirs = unit_of(target)
        sibling = theirs == mine and (PACKAGE / mine).is_dir()
        delegated = DELEGATIONS.get(me) == target and target not in top_level_imports(path)
        assert sibling or delegated or LAYERS[theirs] < LAYERS[mine], f"{me} imports {target}: upward or sideways"


def top_level_imports(path: Path, source: str | None = None) -> set[str]:
    """The modules of ours that the file (or `source` read as that file) imports outside functions,
    when it is imported."""
    tree = ast.parse(path.read_text() if source is None else source)
    lazy = {id(node) for function in ast.walk(tree) if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef))
            for node in ast.walk(function)}
    eager = [node for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom)) and id(node) not in lazy]
    return set(imported_modules(path, ast.unparse(ast.Module(body=eager, type_ignores=[]))))


def test_the_checker_sees_lazy_and_relative_imports():
    schedule = PACKAGE / "schedule.py"
    source = "from . import grid\nfrom .grid import snap_to_grid\n\ndef late():\n    from .api import search\n"
    assert set(imported_modules(schedule, source)) == {"oss_fast.grid", "oss_fast.api"}
    assert top_level_imports(schedule, source) == {"oss_fast.grid"}
    engine = PACKAGE / "engine" / "search.py"
    assert set(imported_modules(engine, "from .. import dp\nfrom ..ops.euler import euler_rows\n")) == \
        {"oss_fast.dp", "oss_fast.ops.euler"}
