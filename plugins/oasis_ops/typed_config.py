"""Merge a JSON object into a small frozen config dataclass, with errors that name the source."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields, replace
from typing import Any, TypeVar

from oasis_ops.errors import OasisInputError

C = TypeVar("C")


def merge_config(
    base: C,
    data: Mapping[str, Any] | None,
    source: str,
    *,
    choices: Mapping[str, tuple[str, ...]],
    minimums: Mapping[str, int] | None = None,
    maximums: Mapping[str, int] | None = None,
    switches: tuple[str, ...] = (),
) -> C:
    """``base`` with ``data``'s fields replaced: string fields must be one of ``choices[field]``,
    ``switches`` JSON booleans, the others integers from ``minimums.get(field, 1)`` to
    ``maximums.get(field)`` (if given)."""
    if not data:
        return base
    if not isinstance(data, Mapping):
        raise OasisInputError(f"{source}: must be a JSON object, got {type(data).__name__}")
    known = {f.name for f in fields(base)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - known)
    if unknown:
        raise OasisInputError(f"{source}: unknown field(s) {unknown}; known fields: {sorted(known)}")
    for name, value in data.items():
        if name in choices:
            if value not in choices[name]:
                raise OasisInputError(f"{source}: {name} must be one of {list(choices[name])}, got {value!r}")
            continue
        if name in switches:
            if not isinstance(value, bool):
                raise OasisInputError(f"{source}: {name} must be true or false, got {value!r}")
            continue
        minimum, maximum = (minimums or {}).get(name, 1), (maximums or {}).get(name)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise OasisInputError(f"{source}: {name} must be an integer >= {minimum}, got {value!r}")
        if maximum is not None and value > maximum:
            raise OasisInputError(f"{source}: {name} must be at most {maximum}, got {value!r}")
    return replace(base, **dict(data))  # type: ignore[type-var]
