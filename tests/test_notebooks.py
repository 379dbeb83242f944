"""The contract of the committed stage notebooks: they are the only source of themselves, so this checks them."""
from __future__ import annotations

import ast
import re
from pathlib import Path

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
