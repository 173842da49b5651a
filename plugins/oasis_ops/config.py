"""Deployment settings, read from the environment with defaults for the embedded set-up."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from oasis_ops.errors import OasisInputError

#: The repository root when the package runs from a checkout (``plugins/oasis_ops/``).
PROJECT_ROOT = Path(__file__).resolve().parents[2]
#: Long enough to notice a failed run and clear its failed chunk (which needs its intermediate files).
DEFAULT_INTERMEDIATE_RETENTION = timedelta(days=7)
DEFAULT_HYGIENE_SCHEDULE = "@hourly"
RETENTION_ENV = "OASIS_INTERMEDIATE_RETENTION_DAYS"


def _default_airflow_home() -> Path:
    return Path(os.environ.get("AIRFLOW_HOME") or PROJECT_ROOT / ".airflow")


def _retention(env: Mapping[str, str]) -> timedelta:
    text = env.get(RETENTION_ENV)
    if not text:
        return DEFAULT_INTERMEDIATE_RETENTION
    try:
        days = float(text)
    except ValueError:
        days = math.nan
    if not (math.isfinite(days) and days >= 0):
        raise OasisInputError(
            f"{RETENTION_ENV}: {text!r} is not a number of days >= 0; set it to e.g. 7 "
            f"(or unset it: {DEFAULT_INTERMEDIATE_RETENTION.days})"
        )
    return timedelta(days=days)


@dataclass(frozen=True)
class OasisConfig:
    """Where the registry, the storage root and the numba cache live, and how long leftovers stay.

    ``OASIS_MODEL_REGISTRY``: YAML file listing the models (default: the project's own registry of
    its synthetic model). ``OASIS_STORAGE_ROOT``: local path or object-storage URI holding every
    file a run reads or writes (default: ``$AIRFLOW_HOME/storage``). ``NUMBA_CACHE_DIR``: where
    oasislmf's compiled kernels are kept between runs (default: ``~/.cache/oasis_ops/numba``).
    ``OASIS_INTERMEDIATE_RETENTION_DAYS``: how long after a v2 run ended (success or failure; a failed
    run keeps them so that clearing its failed chunk resumes it) the storage hygiene DAG removes its
    intermediate files (default 7, fractions allowed; 0: at its next sweep). ``OASIS_HYGIENE_SCHEDULE``:
    when that DAG sweeps, a cron expression or preset (default ``@hourly``).
    """

    registry_path: Path
    storage_root: str
    numba_cache_dir: Path
    intermediate_retention: timedelta = DEFAULT_INTERMEDIATE_RETENTION
    hygiene_schedule: str = DEFAULT_HYGIENE_SCHEDULE

    @classmethod
    def from_env(cls) -> OasisConfig:
        """Raises :class:`~oasis_ops.errors.OasisInputError` naming the variable when one is malformed."""
        env = os.environ
        return cls(
            registry_path=Path(env.get("OASIS_MODEL_REGISTRY") or PROJECT_ROOT / "models" / "registry.yaml"),
            storage_root=env.get("OASIS_STORAGE_ROOT") or str(_default_airflow_home() / "storage"),
            numba_cache_dir=Path(env.get("NUMBA_CACHE_DIR") or Path.home() / ".cache" / "oasis_ops" / "numba"),
            intermediate_retention=_retention(env),
            hygiene_schedule=env.get("OASIS_HYGIENE_SCHEDULE") or DEFAULT_HYGIENE_SCHEDULE,
        )
