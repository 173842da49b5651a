"""Deployment settings, read from the environment with defaults for the embedded set-up."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

#: The repository root when the package runs from a checkout (``plugins/oasis_ops/``).
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def _default_airflow_home() -> Path:
    return Path(os.environ.get("AIRFLOW_HOME") or PROJECT_ROOT / ".airflow")


@dataclass(frozen=True)
class OasisConfig:
    """Where the registry, the storage root and the numba cache live.

    ``OASIS_MODEL_REGISTRY``: YAML file listing the models (default: the project's own registry of
    its synthetic model). ``OASIS_STORAGE_ROOT``: local path or object-storage URI holding every
    file a run reads or writes (default: ``$AIRFLOW_HOME/storage``). ``NUMBA_CACHE_DIR``: where
    oasislmf's compiled kernels are kept between runs (default: ``~/.cache/oasis_ops/numba``).
    """

    registry_path: Path
    storage_root: str
    numba_cache_dir: Path

    @classmethod
    def from_env(cls) -> OasisConfig:
        env = os.environ
        return cls(
            registry_path=Path(env.get("OASIS_MODEL_REGISTRY") or PROJECT_ROOT / "models" / "registry.yaml"),
            storage_root=env.get("OASIS_STORAGE_ROOT") or str(_default_airflow_home() / "storage"),
            numba_cache_dir=Path(env.get("NUMBA_CACHE_DIR") or Path.home() / ".cache" / "oasis_ops" / "numba"),
        )
