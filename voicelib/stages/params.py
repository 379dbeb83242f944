"""Notebook parameters: what each stage declares, the rules their values must keep, and the layers that set them.

A stage notebook declares its parameters in one cell tagged `parameters` (read with papermill). The
caller gives a rule per parameter (type is read from the notebook; range, choices or a config class come
from the rule), and values arrive in layers (defaults < config files < command line). Every value is
checked before any stage runs: a bad one is refused with one line naming the parameter, the value and
what is allowed.
"""
from __future__ import annotations

import ast
import difflib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import yaml

TYPES = {"str": str, "int": int, "float": (int, float), "bool": bool, "list": list, "dict": dict}


@dataclass(frozen=True)
class Param:
    """One notebook parameter: its name, declared type, default value, help text and the stages taking it."""

    name: str
    type_name: str
    default: Any
    help: str
    stages: tuple[str, ...]


@dataclass(frozen=True)
class Rule:
    """What a parameter's value must be beyond its type: a range, choices (for a list: of each item), a check."""

    low: float | None = None
    high: float | None = None
    choices: tuple = ()
    check: Callable[[Any], Any] | None = None  # raises ValueError (e.g. a config class's from_dict)
    path: bool = False  # a path (or list of paths): made absolute against the caller's working directory

    def apply(self, name: str, value: Any) -> None:
        """Raise ValueError (one line: name, value, what is allowed) unless `value` keeps the rule."""
        items = value if isinstance(value, list) else [value]
        if self.choices and any(v not in self.choices for v in items):
            bad = next(v for v in items if v not in self.choices)
            raise ValueError(f"parameter {name}={bad!r} is not allowed; "
                             f"choose from {', '.join(map(str, self.choices))}")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if (self.low is not None and value < self.low) or (self.high is not None and value > self.high):
                raise ValueError(f"parameter {name}={value!r} is out of range; allowed: {self.low:g} to {self.high:g}")
        if self.check is not None:
            try:
                self.check(value)
            except (ValueError, TypeError) as exc:
                raise ValueError(f"parameter {name}: {' '.join(str(exc).split())}") from None


def notebook_parameters(notebook: str | os.PathLike) -> dict[str, Param]:
    """Return the parameters declared in a notebook's cell tagged `parameters` (via papermill)."""
    import papermill

    notebook = Path(notebook)
    if not notebook.is_file():
        raise FileNotFoundError(f"{notebook}: stage notebook not found; check the notebooks folder")
    found = papermill.inspect_notebook(str(notebook))
    return {name: Param(name, p["inferred_type_name"], _literal(p["default"], name, notebook), p["help"],
                        (notebook.stem,)) for name, p in found.items()}


def _literal(text: str, name: str, notebook: Path) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError) as exc:
        raise ValueError(f"{notebook.name}: parameter {name!r} default {text!r} is not a literal; "
                         "write plain values in the parameters cell") from exc


def collect_parameters(notebooks: list[Path]) -> dict[str, Param]:
    """Return the union of the notebooks' parameters; a shared name must have one type and one default."""
    known: dict[str, Param] = {}
    for notebook in notebooks:
        for name, param in notebook_parameters(notebook).items():
            if name in known:
                first = known[name]
                if (first.default, first.type_name) != (param.default, param.type_name):
                    raise ValueError(f"parameter {name}: {param.stages[0]} declares {param.type_name} = "
                                     f"{param.default!r} but {first.stages[0]} {first.type_name} = {first.default!r};"
                                     " make the parameters cells agree")
                param = Param(name, first.type_name, first.default, first.help or param.help,
                              first.stages + param.stages)
            known[name] = param
    return known


def check_names(names: Any, known: dict[str, Param], *, origin: str) -> None:
    """Refuse parameter names no stage declares, suggesting the closest known names."""
    for name in names:
        if name not in known:
            close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.6)
            hint = f"did you mean {' or '.join(close)}? " if close else ""
            raise ValueError(f"unknown parameter {name!r} ({origin}); {hint}"
                             f"known parameters: {', '.join(sorted(known))}")


def check_value(param: Param, value: Any) -> Any:
    """Check a value against the declared type (int accepted as float, a word as a list); return it."""
    if value is None and ("None" in param.type_name or param.default is None):
        return value
    names = [t.strip().split("[")[0] for t in param.type_name.replace("Optional[", "").split("|")]
    wanted = [TYPES[t] for t in names if t in TYPES]
    if wanted == [list] and isinstance(value, str):
        return [value]  # --set tts_engines=espeak
    ok = not wanted or any(isinstance(value, w) for w in wanted)
    if not ok or (isinstance(value, bool) and bool not in wanted and wanted):
        raise ValueError(f"parameter {param.name}={value!r} must be {param.type_name}")
    return float(value) if wanted == [(int, float)] else value


def load_config(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML file of parameter values (a mapping of name: value)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML ({' '.join(str(exc).split())[:200]})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of parameter: value, got {type(data).__name__}")
    return data


def parse_set(items: list[str]) -> dict[str, Any]:
    """Parse `--set name=value` (or `name.field=value` for dict parameters); values are read as YAML."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"--set {item!r}: write it as name=value, e.g. --set training.epochs=3")
        parsed = yaml.safe_load(value) if value.strip() else ""
        name, dot, field = key.partition(".")
        if dot:
            out.setdefault(name, {})[field] = parsed
        else:
            out[key] = parsed
    return out


def resolve(known: dict[str, Param], rules: dict[str, Rule], layers: list[tuple[str, dict[str, Any]]], *,
            cwd: Path, defaults_base: Path) -> dict[str, Any]:
    """Merge defaults with (origin, values) layers (dicts merge by field), check names, types and rules.

    Path parameters are made absolute: defaults against `defaults_base` (the notebooks' folder, where
    they are written for JupyterLab), given values against `cwd`.
    """
    missing = sorted(set(known) - set(rules))
    if missing:
        raise ValueError(f"no rule for parameter(s) {', '.join(missing)}; add them to the runner's RULES")
    params = {name: _absolute(p.default, defaults_base) if rules[name].path else p.default for name, p in known.items()}
    for origin, values in layers:
        check_names(values, known, origin=origin)
        for name, value in values.items():
            value = check_value(known[name], value)
            if isinstance(value, dict) and isinstance(params[name], dict):
                value = {**params[name], **value}
            params[name] = _absolute(value, cwd) if rules[name].path else value
    for name, value in params.items():
        rules[name].apply(name, value)
    return params


def _absolute(value: Any, base: Path) -> Any:
    """A path (or list of paths) made absolute against `base`; empty strings stay empty."""
    if isinstance(value, list):
        return [str((base / v).resolve()) if isinstance(v, str) and v else v for v in value]
    return str((base / value).resolve()) if isinstance(value, str) and value else value
