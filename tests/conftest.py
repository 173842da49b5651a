"""Fixtures. Tests run against real Airflow, oasislmf and PiWind (read from ``PIWIND_ROOT``, default
``../shared/models/piwind``); what they share besides fixtures lives in the ``harness`` package."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from harness import piwind
from harness.airflow_home import BIN, AirflowHome
from harness.piwind import PIWIND, piwind_workspace
from harness.registry import write_registry

#: The longest test files, longest first: ``make test`` hands files out in collection order to two workers
#: (``--dist loadfile --no-loadscope-reorder``), so these start first and the short files fill the gaps
#: (figures in the README's Tests section). The other files follow in their usual order.
LONGEST_FIRST = (
    "test_compose_stack.py",
    "test_celery_load.py",
    "test_oasis_api.py",
    "test_celery_large_portfolio.py",
    "test_celery_stack.py",
    "test_e2e_piwind.py",
    "test_e2e_synthetic.py",
    "test_e2e_v2.py",
    "test_stack_local.py",
    "test_results_browser.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: position for position, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


@pytest.fixture(scope="session")
def piwind_root() -> Path:
    """PiWind's root; the test is skipped where PiWind is not installed."""
    if not PIWIND.is_dir():
        pytest.skip(f"PiWind is not at {PIWIND}; set PIWIND_ROOT")
    return PIWIND


@pytest.fixture
def piwind_entry(piwind_root: Path) -> dict[str, Any]:
    """PiWind's registry entry (a fresh dict: tests may extend it)."""
    return piwind.piwind_entry()


@pytest.fixture
def piwind_model(tmp_path_factory: pytest.TempPathFactory, piwind_entry: dict[str, Any]):
    """PiWind as the registry loads it."""
    from oasis_ops.registry import load_registry

    registry = load_registry(write_registry(tmp_path_factory.mktemp("registry") / "registry.yaml", piwind_entry))
    (model,) = registry.models
    return model


@pytest.fixture
def storage_root(tmp_path: Path, piwind_root: Path) -> Path:
    """A storage root holding PiWind's exposure files under ``exposure/``."""
    return piwind_workspace(tmp_path)[0]


@pytest.fixture(scope="session")
def piwind_airflow(tmp_path_factory: pytest.TempPathFactory, piwind_root: Path) -> AirflowHome:
    """An embedded Airflow home whose registry holds PiWind and whose storage holds its exposure files."""
    base = tmp_path_factory.mktemp("piwind_e2e")
    storage, registry = piwind_workspace(base)
    return AirflowHome.create(base / "airflow", registry, storage)


@pytest.fixture(scope="module")
def piwind_dags_airflow(tmp_path_factory: pytest.TempPathFactory, piwind_root: Path) -> AirflowHome:
    """A PiWind home of the test module's own, its DAGs serialized into the metadata database: for tests
    that make DAG runs there themselves (:meth:`AirflowHome.make_runs`)."""
    base = tmp_path_factory.mktemp("piwind_dags")
    storage, registry = piwind_workspace(base)
    home = AirflowHome.create(base / "airflow", registry, storage)
    subprocess.run([str(BIN / "airflow"), "dags", "reserialize"], env=home.env(), check=True, capture_output=True, timeout=300)
    return home
