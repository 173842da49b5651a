"""End-to-end runs of the project's own synthetic model: v1 through ``airflow dags test``, and v2
with several chunks giving the same outputs byte for byte."""

from __future__ import annotations

import json
import shutil

import pytest
from airflow_cli import AirflowHome
from conftest import write_registry
from outputs import assert_same_files
from test_e2e_v2 import SCRATCH_PATHS

from oasis_ops.summary import summarise
from oasis_ops.synthetic import SyntheticModelSpec, build_synthetic_model

SPEC = SyntheticModelSpec(locations=60, events=40, areaperils=20, vulnerabilities=6, samples=8, locations_per_account=6)
V1, V2 = "oasisairflow_synthetic_1_v1", "oasisairflow_synthetic_1_v2"


@pytest.fixture(scope="module")
def synthetic_airflow(tmp_path_factory) -> AirflowHome:
    base = tmp_path_factory.mktemp("synthetic_e2e")
    model = build_synthetic_model(base / "model", SPEC)
    storage = base / "storage"
    shutil.copytree(model / "exposure", storage / "portfolio")
    registry = write_registry(
        base / "registry.yaml", {"supplier_id": "OasisAirflow", "model_id": "Synthetic", "version_id": "1", "path": "model"}
    )
    return AirflowHome.create(base / "airflow", registry, storage)


def conf(airflow: AirflowHome, analysis_id: str, **extra) -> dict:
    settings = json.loads((airflow.registry.parent / "model" / "analysis_settings.json").read_text())
    return {
        "location_file": "portfolio/location.csv",
        "accounts_file": "portfolio/account.csv",
        "analysis_settings": settings,
        "analysis_id": analysis_id,
        **extra,
    }


def test_v1_run_of_the_synthetic_model(synthetic_airflow):
    result = synthetic_airflow.dags_test(V1, conf(synthetic_airflow, "synthetic-v1"))
    assert result.returncode == 0, result.stdout[-8000:]
    output = synthetic_airflow.storage / "analyses" / "synthetic-v1" / "output"
    names = {p.name for p in output.iterdir()}
    for level in ("gul", "il"):
        assert {f"{level}_S1_{kind}.csv" for kind in ("selt", "splt", "palt", "ept")} <= names
    summary = {s.perspective: s for s in summarise(output)}
    assert set(summary) == {"gul", "il"}
    assert 0 < summary["il"].aal <= summary["gul"].aal


def test_v2_with_chunks_equals_v1(synthetic_airflow):
    if not (synthetic_airflow.storage / "analyses" / "synthetic-v1" / "output").is_dir():
        pytest.skip("needs the v1 run of test_v1_run_of_the_synthetic_model")
    chunking = {"fixed_lookup_chunks": 4, "fixed_analysis_chunks": 3}
    result = synthetic_airflow.dags_test(V2, conf(synthetic_airflow, "synthetic-v2", chunking=chunking))
    assert result.returncode == 0, result.stdout[-8000:]
    analyses = synthetic_airflow.storage / "analyses"
    assert_same_files(analyses / "synthetic-v1" / "output", analyses / "synthetic-v2" / "output")
    assert_same_files(analyses / "synthetic-v1" / "input", analyses / "synthetic-v2" / "input", ignore=SCRATCH_PATHS)
