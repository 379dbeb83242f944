"""The contract of the committed stage notebooks: they are the only source of themselves, so this checks them."""
from __future__ import annotations

import ast
import importlib
import inspect
import re
import sys
from pathlib import Path
from typing import Any

import nbformat
import papermill
import pytest

import run_pipeline
from voicelib.stages import checks

NOTEBOOKS = [run_pipeline.NOTEBOOKS / f"{stage}.ipynb" for stage in run_pipeline.STAGES]
FORBIDDEN = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda, ast.For, ast.AsyncFor, ast.While,
             ast.Try, ast.TryStar, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)
PARAMETER_TYPES = {"str", "int", "float", "bool", "list", "dict"}


def _code(nb) -> list[str]:
    return [c.source for c in nb.cells if c.cell_type == "code"]


@pytest.fixture(params=NOTEBOOKS, ids=lambda p: p.stem)
def notebook(request) -> tuple[Path, nbformat.NotebookNode]:
    return request.param, nbformat.read(request.param, as_version=4)


def test_every_stage_has_its_notebook_and_no_generator_remains() -> None:
    assert all(p.is_file() for p in NOTEBOOKS)
    assert not (run_pipeline.NOTEBOOKS / "build_notebooks.py").exists()
    assert sorted(p.name for p in run_pipeline.NOTEBOOKS.glob("*.ipynb")) == sorted(p.name for p in NOTEBOOKS)


def test_one_tagged_parameters_cell_typed_and_commented(notebook) -> None:
    path, nb = notebook
    tagged = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1 and tagged[0].cell_type == "code", f"{path.name}: need exactly one parameters cell"
    found = papermill.inspect_notebook(str(path))
    assert {"run_dir", "seed"} <= set(found), f"{path.name}: every notebook takes the run directory and a seed"
    for name, p in found.items():
        assert p["inferred_type_name"] in PARAMETER_TYPES, f"{path.name}: {name} needs one of {PARAMETER_TYPES}"
        assert p["help"].strip(), f"{path.name}: {name} needs a trailing comment saying what it is"
        ast.literal_eval(p["default"])  # plain values only: papermill does not recompute expressions
    declared = [n.target.id for n in ast.parse(tagged[0].source).body if isinstance(n, ast.AnnAssign)]
    missing = set(declared) - set(found)
    assert declared == list(found), f"{path.name}: papermill cannot parse {missing} ('=' in a comment?)"


def test_no_outputs_committed(notebook) -> None:
    path, nb = notebook
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, f"{path.name}: clear outputs before committing"


def test_no_definitions_loops_or_try_in_cells(notebook) -> None:
    path, nb = notebook
    for source in _code(nb):
        for node in ast.walk(ast.parse(source)):
            assert not isinstance(node, FORBIDDEN), (
                f"{path.name}: {type(node).__name__} in a cell ({source.splitlines()[0][:60]}); move it into voicelib")


def test_no_unused_imports(notebook) -> None:
    path, nb = notebook
    trees = [ast.parse(s) for s in _code(nb)]
    imported = {(a.asname or a.name).split(".")[0] for t in trees for n in ast.walk(t)
                if isinstance(n, (ast.Import, ast.ImportFrom)) for a in n.names}
    used = {n.id for t in trees for n in ast.walk(t) if isinstance(n, ast.Name)}
    assert not imported - used, f"{path.name}: unused imports {sorted(imported - used)}"


def test_last_section_is_checks_of_named_voicelib_functions(notebook) -> None:
    path, nb = notebook
    headings = [i for i, c in enumerate(nb.cells) if c.cell_type == "markdown" and re.match(r"^##\s", c.source)]
    assert headings and nb.cells[headings[-1]].source.strip() == "## Checks", (
        f"{path.name}: last section must be Checks")
    cells = nb.cells[headings[-1] + 1:]
    assert cells and all(c.cell_type == "code" for c in cells)
    for cell in cells:
        for statement in ast.parse(cell.source).body:
            call = statement.value if isinstance(statement, ast.Expr) else None
            func = getattr(call, "func", None)
            assert isinstance(func, ast.Attribute) and getattr(func.value, "id", None) == "checks", (
                f"{path.name}: checks cell line {ast.unparse(statement)[:50]!r} is not a checks call")
            assert callable(getattr(checks, func.attr, None)), f"{path.name}: voicelib.stages.checks has no {func.attr}"


def test_every_parameter_is_known_to_the_runner_validation() -> None:
    for path in NOTEBOOKS:
        unknown = set(papermill.inspect_notebook(str(path))) - set(run_pipeline.RULES)
        assert not unknown, f"{path.name}: parameters {sorted(unknown)} have no rule in run_pipeline.RULES"


def _voicelib_names(trees: list[ast.Module]) -> dict[str, Any]:
    """What each name a notebook imports from voicelib is bound to, resolved the way Python's import does."""
    names: dict[str, Any] = {}
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "voicelib":
                module = importlib.import_module(node.module)
                for alias in node.names:
                    found = getattr(module, alias.name, None)
                    names[alias.asname or alias.name] = (found if found is not None
                                                         else importlib.import_module(f"{node.module}.{alias.name}"))
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] == "voicelib":  # `import voicelib.x` binds voicelib itself
                        module = importlib.import_module(alias.name)
                        names[alias.asname or "voicelib"] = module if alias.asname else sys.modules["voicelib"]
    return names


def _call_target(func: ast.expr, names: dict[str, Any]) -> tuple[str, Any] | None:
    """(dotted name, object) of a call's target when it starts at a voicelib import; None otherwise."""
    attrs = []
    while isinstance(func, ast.Attribute):
        attrs.append(func.attr)
        func = func.value
    if not isinstance(func, ast.Name) or func.id not in names:
        return None
    target, dotted = names[func.id], func.id
    for attr in reversed(attrs):
        if not hasattr(target, attr):
            raise AttributeError(f"{dotted} ({getattr(target, '__name__', target)}) has no {attr}")
        target, dotted = getattr(target, attr), f"{dotted}.{attr}"
    return dotted, target


def unbound_calls(nb) -> tuple[int, list[str]]:
    """Bind every call of a voicelib function in the notebook's code cells to its signature (placeholder values).

    Returns how many calls were checked and one line per call that does not bind (notebook cell index, the
    call, the signature, why).
    """
    cells = [(i, ast.parse(c.source)) for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    names = _voicelib_names([tree for _, tree in cells])
    checked, failures = 0, []
    for index, tree in cells:
        for call in (n for n in ast.walk(tree) if isinstance(n, ast.Call)):
            where = f"cell {index}: {ast.unparse(call)[:90]}"
            try:
                found = _call_target(call.func, names)
            except AttributeError as exc:
                failures.append(f"{where}: {exc}")
                continue
            if found is None or not (getattr(found[1], "__module__", None) or "").startswith("voicelib"):
                continue  # not a call into voicelib (pandas, IPython, a method of a returned object)
            dotted, target = found
            signature = inspect.signature(target)
            args = [object() for a in call.args if not isinstance(a, ast.Starred)]
            kwargs = {k.arg: object() for k in call.keywords if k.arg is not None}
            unpacked = len(args) < len(call.args) or len(kwargs) < len(call.keywords)  # *x, **y: counts unknown
            try:
                (signature.bind_partial if unpacked else signature.bind)(*args, **kwargs)
            except TypeError as exc:
                failures.append(f"{where}: does not bind to {dotted}{signature}: {exc}")
            checked += 1
    return checked, failures


def test_every_voicelib_call_binds_to_the_current_signature(notebook) -> None:
    path, nb = notebook
    checked, failures = unbound_calls(nb)
    assert checked, f"{path.name}: no call into voicelib found; is the import resolution broken?"
    assert not failures, f"{path.name}: calls that no longer match voicelib:\n" + "\n".join(failures)


def test_a_renamed_keyword_or_function_is_caught() -> None:
    nb = nbformat.read(run_pipeline.NOTEBOOKS / "02_augment.ipynb", as_version=4)
    cell = next(c for c in nb.cells if "n=augment_examples" in c.source)
    cell.source = cell.source.replace("n=augment_examples", "count=augment_examples")
    nb.cells.append(nbformat.v4.new_code_cell("stage.settingz(augmentation)"))
    checked, failures = unbound_calls(nb)
    assert len(failures) == 2 and checked
    assert "stage.examples(" in failures[0] and "'count'" in failures[0] and "has no settingz" in failures[1]
