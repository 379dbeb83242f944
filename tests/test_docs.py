"""Maps that cannot go stale: README's Layout and DESIGN's module table against the package tree.

What the docs must look like:
- README.md, section `## Layout`: its indented block names every subpackage, `voicelib/<name>/` for a top-level
  one and `<name>/` for a nested one (`sources/`); a `x.py` named on a `voicelib/<name>/` entry (or its
  continuation lines) is a file under that folder, one on another entry (`run_pipeline.py`) a file of the repo.
- docs/DESIGN.md, section `## Modules and their public API`: a table whose first column names each module in
  backticks by its path under `voicelib/` (`errors.py`, `__main__.py`, `audio/decode.py`); `__init__.py` files
  are left out, and `data/sources/` may be one row `data/sources/<name>.py` or a row per module. Whatever the
  first column names, and every `*.py` the other column names, exists.
"""
from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "voicelib"
COLLECTIVE = "data/sources"  # engines and corpora: one row `data/sources/<name>.py` may stand for them all
TICKED = re.compile(r"`([^`\s]+)`")
PY_NAME = re.compile(r"(?<![\w/.<>-])([\w./<>-]*\w\.py)\b")


def _modules() -> list[str]:
    """Every module of the package by its path under voicelib/, without __init__.py."""
    return sorted(p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py")
                  if p.name != "__init__.py" and "__pycache__" not in p.parts)


def _subpackages() -> list[str]:
    return sorted(p.parent.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*/__init__.py"))


def _section(path: Path, title: str) -> str:
    """The text under the `## title` heading up to the next heading of that level or above."""
    text = path.read_text(encoding="utf-8")
    found = re.search(rf"^## {re.escape(title)}[ \t]*\n(.*?)(?=^#{{1,2}} |\Z)", text, flags=re.M | re.S)
    assert found, f"{path.name}: no section '## {title}'"
    return found.group(1)


def _layout_entries() -> list[tuple[str, str]]:
    """(first word, text) of each entry of README's Layout block; indented lines continue the entry above."""
    lines = [line[4:] for line in _section(REPO / "README.md", "Layout").splitlines() if line.startswith("    ")]
    assert lines, "README.md: the Layout section has no indented block"
    entries: list[tuple[str, str]] = []
    for line in lines:
        if line[:1].isspace() and entries:
            entries[-1] = (entries[-1][0], entries[-1][1] + " " + line.strip())
        elif line.strip():
            first, _, rest = line.strip().partition(" ")
            entries.append((first, rest))
    return entries


def _module_table() -> list[tuple[list[str], str]]:
    """(modules named in the first column, the rest of the row) of DESIGN's module table."""
    section = _section(REPO / "docs" / "DESIGN.md", "Modules and their public API")
    rows = [line for line in section.splitlines() if line.startswith("|")]
    assert len(rows) > 2, "docs/DESIGN.md: no module table under '## Modules and their public API'"
    table = []
    for row in rows[2:]:  # after the header and its |---| line
        first, _, rest = row.strip("|").partition("|")
        table.append(([m.removeprefix("voicelib/") for m in TICKED.findall(first)], rest))
    return table


def _exists(name: str, *, bases: list[Path]) -> bool:
    """A named file exists under one of the bases; a `<placeholder>` file name stands for any file there."""
    if "<" in name:
        return any((base / name).parent.is_dir() for base in bases)
    if name.endswith("/"):
        return any((base / name).is_dir() for base in bases)
    return any((base / name).is_file() for base in bases) or (
        "/" not in name and any(next(base.rglob(name), None) for base in bases if base != REPO))


def test_the_readme_layout_names_every_subpackage() -> None:
    entries = _layout_entries()
    heads = {first for first, _ in entries}
    text = " ".join(f"{first} {rest}" for first, rest in entries)
    missing = [sub for sub in _subpackages()
               if (f"voicelib/{sub}/" not in heads if "/" not in sub else f"{sub.rsplit('/', 1)[1]}/" not in text)]
    assert not missing, (f"README.md Layout does not name {missing}: add `voicelib/<name>/` entries (top-level) or "
                         f"`<name>/` on the parent's entry (nested)")


def test_every_file_the_readme_layout_names_exists() -> None:
    stale = []
    for first, rest in _layout_entries():
        folder = PACKAGE / first.removeprefix("voicelib/") if first.startswith("voicelib/") else None
        for name in PY_NAME.findall(f"{first} {rest}"):
            if not _exists(name, bases=[folder] if folder else [REPO]):
                stale.append(f"{name} (on the {first} entry)")
    assert not stale, f"README.md Layout names files that are not in the tree: {stale}"


def test_the_design_table_has_a_row_for_every_module() -> None:
    named = {m for modules, _ in _module_table() for m in modules}
    collective = f"{COLLECTIVE}/<name>.py" in named
    missing = [m for m in _modules() if m not in named and not (collective and m.startswith(f"{COLLECTIVE}/"))]
    assert not missing, (f"docs/DESIGN.md module table has no row for {missing}: add `| `<path under voicelib/>` "
                         f"| public API |` rows")


def test_every_file_the_design_table_names_exists() -> None:
    stale = []
    for modules, rest in _module_table():
        for module in modules:
            if not _exists(module, bases=[PACKAGE]):
                stale.append(f"{module} (first column)")
        row_dirs = [PACKAGE / Path(m).parent for m in modules if m.endswith(".py")]
        for name in PY_NAME.findall(rest):
            if not _exists(name.removeprefix("voicelib/"), bases=[*row_dirs, PACKAGE, REPO]):
                stale.append(f"{name} (on the row of {', '.join(modules)})")
    assert not stale, f"docs/DESIGN.md module table names files that are not in the tree: {stale}"
