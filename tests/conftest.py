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


@pytest.fixture
def piwind_entry() -> dict:
    if not PIWIND.is_dir():
        pytest.skip(f"PiWind is not at {PIWIND}")
    return {"supplier_id": "OasisLMF", "model_id": "PiWind", "version_id": "1", "path": str(PIWIND)}
