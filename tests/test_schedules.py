"""Registry-declared analyses: parsed and checked with the registry, each its own scheduled DAG,
and one runs with its fixed parameters."""

from __future__ import annotations

import pytest

from harness.airflow_home import AirflowHome
from harness.piwind import piwind_workspace
from harness.registry import write_registry
from oasis_ops.constants import Mode
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
        (
            {"name": "Bad Name", "schedule": "@daily"},
            "analyses['Bad Name']: name must be 1-50 lower-case letters, digits or '_', got 'Bad Name'",
        ),
        ({"name": "x", "mode": "v3", "schedule": "@daily"}, "analyses['x']: mode must be one of ['v1', 'v2'], got 'v3'"),
        ({"name": "x"}, "analyses['x']: give exactly one of 'schedule' (cron or preset) or 'asset'"),
        (
            {"name": "x", "schedule": "@daily", "asset": "a.csv"},
            "analyses['x']: give exactly one of 'schedule' (cron or preset) or 'asset'",
        ),
        (
            {"name": "x", "schedule": "every day"},
            "analyses['x']: schedule 'every day' is neither a cron expression nor one of ['@annually', '@continuous', '@daily', "
            "'@hourly', '@monthly', '@once', '@quarterly', '@weekly', '@yearly']",
        ),
        (
            {"name": "x", "schedule": "@daily", "params": {"location": "a.csv"}},
            f"analyses['x']: unknown run parameter(s) ['location']; known: {sorted(KNOWN)}",
        ),
        (
            {"name": "x", "schedule": "@daily", "when": 1},
            "analyses['x']: unknown field(s) ['when']; known fields: ['asset', 'mode', 'name', 'params', 'schedule']",
        ),
    ],
)
def test_bad_entries_name_the_problem(entry, message):
    with pytest.raises(OasisInputError) as error:
        ScheduledAnalysis.parse(entry, KNOWN)
    assert str(error.value) == message


def test_asset_paths_are_made_uris_in_the_storage_root():
    analysis = ScheduledAnalysis.parse(ON_PORTFOLIO, KNOWN)
    assert analysis.mode is Mode.V1
    assert analysis.asset_uri("file:///data/oasis") == "file:///data/oasis/exposure/SourceLocOEDPiWind10.csv"
    assert ScheduledAnalysis.parse(ON_PORTFOLIO | {"asset": "s3://b/loc.csv"}, KNOWN).asset_uri("file:///x") == "s3://b/loc.csv"


def test_each_declared_analysis_becomes_a_dag_and_bad_params_are_a_registry_error(tmp_path, piwind_entry, monkeypatch):
    from oasis_ops.dag_factory import build_dags
    from oasis_ops.registry import load_registry

    monkeypatch.setenv("OASIS_STORAGE_ROOT", str(tmp_path / "storage"))
    bad = piwind_entry | {"model_id": "Other", "analyses": [{"name": "x", "schedule": "@daily", "params": {"priority": 42}}]}
    registry = load_registry(write_registry(tmp_path / "r.yaml", piwind_entry | {"analyses": [NIGHTLY, ON_PORTFOLIO]}, bad))
    (error,) = registry.errors
    assert error.entry == f"{tmp_path / 'r.yaml'} models[1] (OasisLMF/Other/1)"
    # The first line names the analysis, the param and why; jsonschema's details follow.
    assert error.reason.splitlines()[0] == "analyses['x']: Invalid input for param priority: 42 is greater than the maximum of 10"
    dags = build_dags(registry)
    nightly, on_portfolio = dags["oasislmf_piwind_1_v2__nightly"], dags["oasislmf_piwind_1_v1__on_portfolio"]
    assert nightly.timetable.expression == "0 2 * * *"
    assert nightly.params["priority"] == 7 and nightly.params["action"] == "generate_inputs"
    assert {t.queue for t in nightly.tasks} == {"OasisLMF-PiWind-1-v2"}
    (asset,) = on_portfolio.timetable.asset_condition.objects
    assert asset.uri == f"file://{tmp_path}/storage/exposure/SourceLocOEDPiWind10.csv"


@pytest.mark.e2e
def test_a_scheduled_analysis_runs_with_its_parameters(tmp_path, piwind_root):
    storage, registry = piwind_workspace(tmp_path, analyses=[NIGHTLY])
    airflow = AirflowHome.create(tmp_path / "airflow", registry, storage)
    airflow.dags_test_ok("oasislmf_piwind_1_v2__nightly", {})  # no conf: the declared parameters
    inputs = storage / "analyses" / "nightly" / "input"
    assert (inputs / "items.bin").is_file() and not (inputs.parent / "output").exists()
