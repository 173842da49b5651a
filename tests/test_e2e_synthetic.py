"""End-to-end runs of the project's own synthetic model: v1 through ``airflow dags test``, and v2
with several chunks giving the same outputs byte for byte."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from harness.airflow_home import AirflowHome
from harness.outputs import assert_same_analysis
from harness.registry import write_registry
from oasis_ops.results.reader import AALType, Perspective
from oasis_ops.tools.summary import summarise
from oasis_ops.tools.synthetic import SyntheticModelSpec, build_synthetic_model

pytestmark = pytest.mark.e2e

#: Few periods, so that each holds several events and their losses are summed (in float32).
SPEC = SyntheticModelSpec(locations=60, events=40, areaperils=20, vulnerabilities=6, samples=8, locations_per_account=6, periods=4)
V1, V2 = "oasisairflow_synthetic_1_v1", "oasisairflow_synthetic_1_v2"


@pytest.fixture(scope="module")
def synthetic_airflow(tmp_path_factory: pytest.TempPathFactory) -> AirflowHome:
    base = tmp_path_factory.mktemp("synthetic_e2e")
    model = build_synthetic_model(base / "model", SPEC)
    storage = base / "storage"
    shutil.copytree(model / "exposure", storage / "portfolio")
    registry = write_registry(
        base / "registry.yaml", {"supplier_id": "OasisAirflow", "model_id": "Synthetic", "version_id": "1", "path": "model"}
    )
    return AirflowHome.create(base / "airflow", registry, storage)


def conf(airflow: AirflowHome, analysis_id: str, **extra: Any) -> dict[str, Any]:
    settings = json.loads((airflow.registry.parent / "model" / "analysis_settings.json").read_text())
    return {
        "location_file": "portfolio/location.csv",
        "accounts_file": "portfolio/account.csv",
        "analysis_settings": settings,
        "analysis_id": analysis_id,
        **extra,
    }


@pytest.fixture(scope="module")
def v1_analysis(synthetic_airflow: AirflowHome) -> Path:
    """The v1 run every test here checks or compares with, run once for the module."""
    synthetic_airflow.dags_test_ok(V1, conf(synthetic_airflow, "synthetic-v1"))
    return synthetic_airflow.analysis("synthetic-v1")


def test_v1_run_of_the_synthetic_model(v1_analysis):
    output = v1_analysis / "output"
    names = {p.name for p in output.iterdir()}
    for level in ("gul", "il"):
        assert {f"{level}_S1_{kind}.csv" for kind in ("selt", "splt", "palt", "ept")} <= names
    results = summarise(output)
    assert [s.perspective for s in results.summary_sets] == [Perspective.GUL, Perspective.IL]
    gul, il = (results.aal_of(perspective, 1, 1, AALType.ANALYTICAL) for perspective in (Perspective.GUL, Perspective.IL))
    assert gul and il and 0 < il.mean <= gul.mean


def test_v2_with_chunks_equals_v1(synthetic_airflow, v1_analysis):
    chunking = {"fixed_lookup_chunks": 4, "fixed_analysis_chunks": 3}
    synthetic_airflow.dags_test_ok(V2, conf(synthetic_airflow, "synthetic-v2", chunking=chunking))
    assert_same_analysis(v1_analysis, synthetic_airflow.analysis("synthetic-v2"))
    chunks = [t.task_id for t in synthetic_airflow.task_instances(V2) if t.task_id in ("lookup_chunk", "loss_chunk")]
    assert (chunks.count("lookup_chunk"), chunks.count("loss_chunk")) == (4, 3)


def test_v2_with_more_than_9_loss_chunks_equals_v1(synthetic_airflow, v1_analysis):
    """The output tools add the chunks' files in name order (``P10`` before ``P2``): with 10 chunks or
    more, the EPTs were summed in another order than v1's and differed from them in their last bit."""
    chunking = {"fixed_analysis_chunks": 12}
    synthetic_airflow.dags_test_ok(V2, conf(synthetic_airflow, "synthetic-v2-12", chunking=chunking))
    assert_same_analysis(v1_analysis, synthetic_airflow.analysis("synthetic-v2-12"))
