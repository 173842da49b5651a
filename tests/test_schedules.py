"""Registry-declared analyses: parsed and checked with the registry, each its own scheduled DAG,
and one runs with its fixed parameters."""

from __future__ import annotations

import pytest
from airflow_cli import AirflowHome
from conftest import piwind_workspace, write_registry

from oasis_ops.errors import OasisInputError
from oasis_ops.params import dag_params
from oasis_ops.schedules import ScheduledAnalysis

KNOWN = set(dag_params())
NIGHTLY = {
    "name": "nightly",
    "mode": "v2",
    "schedule": "0 2 * * *",
    "params": {"location_file": "exposure/SourceLocOEDPiWind10.csv", "action": "generate_inputs", "analysis_id": "nightly", "priority": 7},
}
ON_PORTFOLIO = {"name": "on_portfolio", "asset": "exposure/SourceLocOEDPiWind10.csv", "params": {"location_file": "exposure/SourceLocOEDPiWind10.csv", "action": "generate_inputs"}}


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"name": "Bad Name", "schedule": "@daily"}, "name must be"),
        ({"name": "x", "mode": "v3", "schedule": "@daily"}, "mode must be one of ['v1', 'v2']"),
        ({"name": "x"}, "exactly one of 'schedule'"),
        ({"name": "x", "schedule": "@daily", "asset": "a.csv"}, "exactly one of 'schedule'"),
        ({"name": "x", "schedule": "every day"}, "schedule 'every day' is neither a cron expression"),
        ({"name": "x", "schedule": "@daily", "params": {"location": "a.csv"}}, "unknown run parameter(s) ['location']"),
        ({"name": "x", "schedule": "@daily", "when": 1}, "unknown field(s) ['when']"),
    ],
)
def test_bad_entries_name_the_problem(entry, message):
    with pytest.raises(OasisInputError) as error:
        ScheduledAnalysis.parse(entry, KNOWN)
    assert message in str(error.value)


def test_asset_paths_are_made_uris_in_the_storage_root():
    analysis = ScheduledAnalysis.parse(ON_PORTFOLIO, KNOWN)
    assert analysis.mode == "v1"
    assert analysis.asset_uri("file:///data/oasis") == "file:///data/oasis/exposure/SourceLocOEDPiWind10.csv"
    assert ScheduledAnalysis.parse(ON_PORTFOLIO | {"asset": "s3://b/loc.csv"}, KNOWN).asset_uri("file:///x") == "s3://b/loc.csv"


def test_each_declared_analysis_becomes_a_dag_and_bad_params_are_a_registry_error(tmp_path, piwind_entry, monkeypatch):
    from oasis_ops.dag_factory import build_dags
    from oasis_ops.registry import load_registry

    monkeypatch.setenv("OASIS_STORAGE_ROOT", str(tmp_path / "storage"))
    bad = piwind_entry | {"model_id": "Other", "analyses": [{"name": "x", "schedule": "@daily", "params": {"priority": 42}}]}
    registry = load_registry(write_registry(tmp_path / "r.yaml", piwind_entry | {"analyses": [NIGHTLY, ON_PORTFOLIO]}, bad))
    (error,) = registry.errors
    assert "OasisLMF/Other/1" in str(error) and "priority: 42 is greater than the maximum of 10" in str(error)
    dags = build_dags(registry)
    nightly, on_portfolio = dags["oasislmf_piwind_1_v2__nightly"], dags["oasislmf_piwind_1_v1__on_portfolio"]
    assert nightly.timetable.expression == "0 2 * * *"
    assert nightly.params["priority"] == 7 and nightly.params["action"] == "generate_inputs"
    assert {t.queue for t in nightly.tasks} == {"OasisLMF-PiWind-1-v2"}
    (asset,) = on_portfolio.timetable.asset_condition.objects
    assert asset.uri == f"file://{tmp_path}/storage/exposure/SourceLocOEDPiWind10.csv"


def test_a_scheduled_analysis_runs_with_its_parameters(tmp_path):
    storage, registry = piwind_workspace(tmp_path, analyses=[NIGHTLY])
    airflow = AirflowHome.create(tmp_path / "airflow", registry, storage)
    result = airflow.dags_test("oasislmf_piwind_1_v2__nightly", {})  # no conf: the declared parameters
    assert result.returncode == 0, result.stdout[-5000:]
    inputs = storage / "analyses" / "nightly" / "input"
    assert (inputs / "items.bin").is_file() and not (inputs.parent / "output").exists()
