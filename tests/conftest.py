"""Shared fixtures. Tests run against real Airflow, oasislmf and PiWind (read from ../shared)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "plugins"))
PIWIND = Path(os.environ.get("PIWIND_ROOT", REPO.parent / "shared" / "models" / "piwind")).resolve()


def write_registry(path: Path, *entries: dict) -> Path:
    import yaml

    path.write_text(yaml.safe_dump({"models": list(entries)}))
    return path


PIWIND_ENTRY = {"supplier_id": "OasisLMF", "model_id": "PiWind", "version_id": "1", "path": str(PIWIND)}


def piwind_workspace(base: Path, **entry: object) -> tuple[Path, Path]:
    """A storage root holding copies of PiWind's exposure files under exposure/ (PiWind stays in
    shared/), and a registry naming PiWind (with ``entry``'s extra fields)."""
    import shutil

    if not PIWIND.is_dir():
        pytest.skip(f"PiWind is not at {PIWIND}")
    storage = base / "storage"
    shutil.copytree(PIWIND / "exposure", storage / "exposure")
    return storage, write_registry(base / "registry.yaml", PIWIND_ENTRY | entry)


@pytest.fixture
def piwind_entry() -> dict:
    if not PIWIND.is_dir():
        pytest.skip(f"PiWind is not at {PIWIND}")
    return dict(PIWIND_ENTRY)


@pytest.fixture
def piwind_model(tmp_path_factory, piwind_entry):
    from oasis_ops.registry import load_registry

    registry = load_registry(write_registry(tmp_path_factory.mktemp("registry") / "registry.yaml", piwind_entry))
    return registry.models[0]


@pytest.fixture
def storage_root(tmp_path) -> Path:
    """A storage root holding PiWind's exposure files under exposure/."""
    return piwind_workspace(tmp_path)[0]


def piwind_settings(name: str) -> dict:
    import json

    return json.loads((PIWIND / "analysis_settings" / name).read_text())


@pytest.fixture(scope="session")
def piwind_airflow(tmp_path_factory):
    """An embedded Airflow home whose registry holds PiWind and whose storage holds its exposure files."""
    from airflow_cli import AirflowHome

    base = tmp_path_factory.mktemp("piwind_e2e")
    storage, registry = piwind_workspace(base)
    return AirflowHome.create(base / "airflow", registry, storage)
