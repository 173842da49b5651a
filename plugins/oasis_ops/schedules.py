"""Analyses a registry entry declares to run by themselves: on a cron/preset schedule, or whenever
an Airflow Asset (e.g. the portfolio's location file) is updated. Each becomes its own DAG.

```yaml
analyses:
  - name: nightly
    mode: v2                       # v1 or v2
    schedule: "0 2 * * *"          # a cron expression or preset (@daily, ...)
    params: {location_file: exposure/loc.csv, analysis_settings: {...}}
  - name: on_new_portfolio
    mode: v1
    asset: exposure/loc.csv        # storage path or URI; an asset event on it triggers a run
    params: {...}
```
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from oasis_ops.constants import Mode
from oasis_ops.errors import OasisInputError

NAME_PATTERN = r"^[a-z0-9][a-z0-9_]{0,49}$"
FIELDS = {"name", "mode", "schedule", "asset", "params"}


@dataclass(frozen=True)
class ScheduledAnalysis:
    """One declared analysis: the DAG mode, the fixed run parameters and what triggers it."""

    name: str
    mode: Mode
    params: Mapping[str, Any]
    schedule: str | None = None
    #: A URI, or a path relative to the storage root (made a URI by ``asset_uri``).
    asset: str | None = None

    @classmethod
    def parse(cls, entry: Any, known_params: set[str]) -> ScheduledAnalysis:
        if not isinstance(entry, Mapping):
            raise OasisInputError(f"analyses: each entry must be a mapping with {sorted(FIELDS)}, got {entry!r}")
        where = f"analyses[{entry.get('name')!r}]"
        unknown = sorted(set(entry) - FIELDS)
        if unknown:
            raise OasisInputError(f"{where}: unknown field(s) {unknown}; known fields: {sorted(FIELDS)}")
        name = entry.get("name")
        if not isinstance(name, str) or not re.match(NAME_PATTERN, name):
            raise OasisInputError(f"{where}: name must be 1-50 lower-case letters, digits or '_', got {name!r}")
        mode = entry.get("mode", Mode.V1.value)
        if mode not in {m.value for m in Mode}:
            raise OasisInputError(f"{where}: mode must be one of {[m.value for m in Mode]}, got {mode!r}")
        schedule, asset = entry.get("schedule"), entry.get("asset")
        if (schedule is None) == (asset is None):
            raise OasisInputError(f"{where}: give exactly one of 'schedule' (cron or preset) or 'asset'")
        for label, value in (("schedule", schedule), ("asset", asset)):
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise OasisInputError(f"{where}: {label} must be a non-empty string, got {value!r}")
        if schedule is not None:
            _check_schedule(schedule, where)
        params = entry.get("params") or {}
        if not isinstance(params, Mapping):
            raise OasisInputError(f"{where}: params must be a mapping of run parameters")
        unknown = sorted(set(params) - known_params)
        if unknown:
            raise OasisInputError(f"{where}: unknown run parameter(s) {unknown}; known: {sorted(known_params)}")
        return cls(name, Mode(mode), dict(params), schedule, asset)

    def asset_uri(self, storage_uri: str) -> str | None:
        """The asset's URI: as given, or the storage root's URI of a relative path."""
        if self.asset is None:
            return None
        return self.asset if "://" in self.asset else f"{storage_uri.rstrip('/')}/{self.asset.lstrip('/')}"


def _check_schedule(schedule: str, where: str) -> None:
    from croniter import croniter

    presets = {"@once", "@continuous", "@hourly", "@daily", "@weekly", "@monthly", "@quarterly", "@yearly", "@annually"}
    if schedule not in presets and not croniter.is_valid(schedule):
        raise OasisInputError(f"{where}: schedule {schedule!r} is neither a cron expression nor one of {sorted(presets)}")
