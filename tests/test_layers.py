"""The package's shape: layers import only downwards, no import cycles, no voicelib import inside a function.

The layers, lowest first (docs/DESIGN.md): the core modules at the top of voicelib/, then audio, data, model,
training | scoring (neither imports the other), evaluation, report, stages | serve, and the CLI.
"""
from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "voicelib"
LEVEL = {"core": 0, "audio": 1, "data": 2, "model": 3, "training": 4, "scoring": 4, "evaluation": 5, "report": 6,
         "stages": 7, "serve": 7, "__main__": 8}
MAX_LINES = 400


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "core"
    return parts[1] if parts[1] in LEVEL else "core"


def _targets(node: ast.AST, module: str, is_package: bool) -> list[str]:
    """The voicelib modules one import statement brings in (the most specific module each name resolves to)."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        base = node.module or ""
        if node.level:
            here = module.split(".") if is_package else module.split(".")[:-1]
            base = ".".join(here[: len(here) - node.level + 1] + ([node.module] if node.module else []))
        names = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
    found = []
    for name in names:
        while name and name not in MODULES:
            name = name.rpartition(".")[0]
        if name and name != module and name != "voicelib":
            found.append(name)
    return found


def imports(module: str) -> list[tuple[str, int, bool]]:
    """(imported module, line, at module level) for every voicelib import in `module`, lazy ones included."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top = {id(n) for n in tree.body}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for target in _targets(node, module, path.name == "__init__.py"):
                out.append((target, node.lineno, id(node) in top))
    return out


GRAPH = {m: imports(m) for m in MODULES}


def test_the_graph_sees_the_package() -> None:
    assert {"voicelib.errors", "voicelib.scoring.detector", "voicelib.stages.collect"} <= set(MODULES)
    assert any(t == "voicelib.errors" for t, _, _ in GRAPH["voicelib.audio.decode"])


def test_no_voicelib_import_inside_a_function() -> None:
    lazy = [f"{m}:{line} imports {t}" for m, edges in GRAPH.items() for t, line, top in edges if not top]
    assert not lazy, "import voicelib modules at the top of the module:\n" + "\n".join(lazy)


def test_layers_import_only_downwards() -> None:
    bad = []
    for module, edges in GRAPH.items():
        mine = layer(module)
        for target, line, _ in edges:
            theirs = layer(target)
            if theirs == mine:
                continue
            if LEVEL[theirs] >= LEVEL[mine]:
                bad.append(f"{module}:{line} ({mine}) imports {target} ({theirs})")
    assert not bad, "imports against the layering:\n" + "\n".join(bad)


def test_no_import_cycles() -> None:
    graph = {m: sorted({t for t, _, _ in edges}) for m, edges in GRAPH.items()}
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for m in graph:
        if m not in state:
            visit(m, [m])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_files_stay_readable(module: str) -> None:
    n = len(MODULES[module].read_text(encoding="utf-8").splitlines())
    assert n <= MAX_LINES, f"{MODULES[module]} has {n} lines; split it by concern (at most {MAX_LINES})"


def test_a_subpackage_is_read_in_one_sitting() -> None:
    big = {p.name: n for p in PACKAGE.iterdir() if p.is_dir() and p.name != "sources"
           and (n := len([f for f in p.glob("*.py") if f.name != "__init__.py"])) > 12}
    assert not big, f"subpackages with more than 12 modules: {big}"
    assert len([p for p in PACKAGE.iterdir() if not p.name.startswith((".", "__pycache__"))]) <= 16


@pytest.mark.parametrize("module", sorted(MODULES))
def test_every_module_imports(module: str) -> None:
    importlib.import_module(module)  # an import of a module that moved or vanished fails here, not at run time


def _string_constants(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [(n.lineno, n.value) for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)]


def test_only_the_run_directory_class_spells_run_file_names() -> None:
    from voicelib.files import RunDir

    names = {n.split("/")[-1] for n in RunDir.STAGE_FILES if "." in n.split("/")[-1]}
    # the data directory (data/) and the model directory (model/saving.py) have files of their own
    skip = {PACKAGE / "files.py", PACKAGE / "model" / "saving.py"} | set((PACKAGE / "data").rglob("*.py"))
    found = [f"{path.relative_to(PACKAGE.parent)}:{line} {value!r}" for path in MODULES.values() if path not in skip
             for line, value in _string_constants(path) if value in names]
    assert not found, "spell run files through voicelib.files.RunDir:\n" + "\n".join(found)
