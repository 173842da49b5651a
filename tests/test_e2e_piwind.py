"""End-to-end v1 runs of PiWind through ``airflow dags test``, compared with PiWind's expected outputs."""

from __future__ import annotations

import pytest

from harness.airflow_home import output_tail
from harness.outputs import assert_no_results, assert_outputs_match
from harness.piwind import CASES, V1_DAG, piwind_settings

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("case", ["control_set", "case_1"])
def test_generate_and_run_matches_expected(piwind_airflow, case):
    piwind_airflow.dags_test_ok(V1_DAG, CASES[case].conf(case))
    folder = piwind_airflow.analysis(case)
    compared = assert_outputs_match(CASES[case].expected, folder / "output")
    assert len(compared) == len(list(CASES[case].expected.glob("*.csv")))
    assert (folder / "input" / "items.bin").is_file() and (folder / "input" / "keys.csv").is_file()
    assert any((folder / "logs").iterdir())
    # Only the published folders remain: no staging, no work files.
    assert sorted(p.name for p in folder.iterdir()) == ["input", "logs", "output"]
    assert not any((piwind_airflow.storage / ".work").iterdir())


def test_generate_inputs_then_run_reuses_the_inputs(piwind_airflow):
    case = CASES["case_0"]
    piwind_airflow.dags_test_ok(V1_DAG, {**case.files, "action": "generate_inputs", "analysis_id": "case_0"})
    folder = piwind_airflow.analysis("case_0")
    assert (folder / "input" / "items.csv").is_file() and not (folder / "output").exists()

    piwind_airflow.dags_test_ok(V1_DAG, {"action": "run", "analysis_id": "case_0", "analysis_settings": case.settings()})
    assert_outputs_match(case.expected, folder / "output")


def test_bad_input_fails_the_run_with_the_reason_in_the_log(piwind_airflow):
    conf = {"location_file": "../../etc/passwd", "analysis_settings": piwind_settings("GUL_analysis_settings.json"), "analysis_id": "bad"}
    result = piwind_airflow.dags_test(V1_DAG, conf)
    # The run was created and ran: its task failed (without retries) with the reason, and so did the run.
    assert result.returncode == 1 and result.stderr.rstrip().endswith("DagRun failed"), output_tail(result)
    reason = f"location_file: '../../etc/passwd' is outside the storage root file://{piwind_airflow.storage}; give a path relative to it"
    assert reason in result.stdout + result.stderr, output_tail(result)
    assert [(t.task_id, t.state) for t in piwind_airflow.task_instances(V1_DAG)] == [("run_analysis", "failed")]
    # No results; the failed task's error report (for the Oasis API) gives the reason.
    ((report, text),) = assert_no_results(piwind_airflow.analysis("bad")).items()
    assert report.endswith("/run_analysis.txt") and f"\nOasisInputError: {reason}\n" in text


def test_conf_outside_the_params_schema_is_refused_at_trigger(piwind_airflow):
    # A conf that would run but for its priority: Airflow refuses it before creating the run.
    conf = CASES["case_0"].conf("refused", priority=11)
    result = piwind_airflow.dags_test(V1_DAG, conf)
    assert result.returncode == 1, output_tail(result)
    refusal = [line for line in result.stderr.splitlines() if line.startswith("airflow.sdk.exceptions.ParamValidationError")]
    reason = "Invalid input for param priority: 11 is greater than the maximum of 10"
    assert refusal == [f"airflow.sdk.exceptions.ParamValidationError: {reason}"], output_tail(result)
    assert "DagRun failed" not in result.stderr
    assert not piwind_airflow.analysis("refused").exists()  # no run, so no task and no error report either


def test_parquet_exposure_gives_the_same_outputs(piwind_airflow):
    case = CASES["control_set"]
    parquet = {param: path.replace(".csv", ".parquet") for param, path in case.files.items()}
    piwind_airflow.dags_test_ok(V1_DAG, case.conf("control_set-parquet") | parquet)
    assert_outputs_match(case.expected, piwind_airflow.analysis("control_set-parquet") / "output")
