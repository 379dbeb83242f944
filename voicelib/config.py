"""What every config dataclass shares: range and choice checks with one-line messages, strict from_dict."""
from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

SAMPLE_RATE = 16000  # Hz: every clip is stored, trained on and scored at this rate (no class-specific rate cue)

T = TypeVar("T")


def check_range(owner: str, name: str, value: Any, low: float | None, high: float | None, *,
                integer: bool = False) -> None:
    """Raise ValueError naming the field, the value and the allowed range when `value` falls outside it."""
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind):
        raise ValueError(f"{owner}: {name}={value!r} must be {'an integer' if integer else 'a number'}")
    if (low is not None and value < low) or (high is not None and value > high):
        allowed = f"{low:g} to {high:g}" if low is not None and high is not None else \
            f"at least {low:g}" if low is not None else f"at most {high:g}"
        raise ValueError(f"{owner}: {name}={value!r} is out of range; allowed: {allowed}")


def check_choice(owner: str, name: str, value: Any, choices: tuple | list) -> None:
    """Raise ValueError naming the field, the value and the allowed choices."""
    if value not in choices:
        raise ValueError(f"{owner}: {name}={value!r} is not allowed; choose one of {', '.join(map(str, choices))}")


def from_dict(cls: type[T], data: dict[str, Any] | None, **fields: Any) -> T:
    """Build dataclass `cls` from `data` (plus `fields`), refusing unknown keys with the list of known ones."""
    data = {**(data or {}), **fields}
    if not isinstance(data, dict):
        raise ValueError(f"{cls.__name__}: expected a mapping of field: value, got {type(data).__name__}")
    known = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown field(s) {', '.join(unknown)}; known fields: {', '.join(known)}")
    return cls(**data)
