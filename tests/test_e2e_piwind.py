"""End-to-end v1 runs of PiWind through ``airflow dags test``, compared with PiWind's expected outputs."""

from __future__ import annotations

import pytest
from airflow_cli import AirflowHome
from conftest import PIWIND, piwind_settings
from outputs import assert_outputs_match

DAG_ID = "oasislmf_piwind_1_v1"
CASES = {
    "control_set": (
        "RI_analysis_settings.json",
        {
            "location_file": "exposure/SourceLocOEDPiWind10.csv",
            "accounts_file": "exposure/SourceAccOEDPiWind.csv",
            "ri_info_file": "exposure/SourceReinsInfoOEDPiWind.csv",
            "ri_scope_file": "exposure/SourceReinsScopeOEDPiWind.csv",
        },
    ),
    "case_0": ("GUL_analysis_settings.json", {"location_file": "exposure/SourceLocOEDPiWind10.csv"}),
    "case_1": (
        "FM_analysis_settings.json",
        {"location_file": "exposure/SourceLocOEDPiWind10.csv", "accounts_file": "exposure/SourceAccOEDPiWind.csv"},
    ),
}


def analysis(piwind_airflow: AirflowHome, analysis_id: str):
    return piwind_airflow.storage / "analyses" / analysis_id


@pytest.mark.parametrize("case", ["control_set", "case_1"])
def test_generate_and_run_matches_expected(piwind_airflow, case):
    settings, files = CASES[case]
    result = piwind_airflow.dags_test(DAG_ID, {**files, "analysis_settings": piwind_settings(settings), "analysis_id": case})
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
    folder = analysis(piwind_airflow, case)
    compared = assert_outputs_match(PIWIND / "expected" / case, folder / "output")
    assert len(compared) == len(list((PIWIND / "expected" / case).glob("*.csv")))
    assert (folder / "input" / "items.bin").is_file() and (folder / "input" / "keys.csv").is_file()
    assert any((folder / "logs").iterdir())
    # Only the published folders remain: no staging, no work files.
    assert sorted(p.name for p in folder.iterdir()) == ["input", "logs", "output"]
    assert not any((piwind_airflow.storage / ".work").iterdir())


def test_generate_inputs_then_run_reuses_the_inputs(piwind_airflow):
    settings, files = CASES["case_0"]
    generated = piwind_airflow.dags_test(DAG_ID, {**files, "action": "generate_inputs", "analysis_id": "case_0"})
    assert generated.returncode == 0, generated.stdout[-5000:]
    folder = analysis(piwind_airflow, "case_0")
    assert (folder / "input" / "items.csv").is_file() and not (folder / "output").exists()

    run = piwind_airflow.dags_test(DAG_ID, {"action": "run", "analysis_id": "case_0", "analysis_settings": piwind_settings(settings)})
    assert run.returncode == 0, run.stdout[-5000:]
    assert_outputs_match(PIWIND / "expected" / "case_0", folder / "output")


def test_bad_input_fails_the_run_with_the_reason_in_the_log(piwind_airflow):
    result = piwind_airflow.dags_test(
        DAG_ID, {"location_file": "../../etc/passwd", "analysis_settings": piwind_settings("GUL_analysis_settings.json"), "analysis_id": "bad"}
    )
    assert result.returncode != 0
    assert "location_file: '../../etc/passwd' is outside the storage root" in result.stdout + result.stderr
    assert not analysis(piwind_airflow, "bad").exists()


def test_conf_outside_the_params_schema_is_refused_at_trigger(piwind_airflow):
    result = piwind_airflow.dags_test(DAG_ID, {"priority": 11, "analysis_id": "refused"})
    assert result.returncode != 0
    assert "priority" in result.stdout + result.stderr
    assert not analysis(piwind_airflow, "refused").exists()


def test_parquet_exposure_gives_the_same_outputs(piwind_airflow):
    settings, files = CASES["control_set"]
    parquet = {param: path.replace(".csv", ".parquet") for param, path in files.items()}
    result = piwind_airflow.dags_test(DAG_ID, {**parquet, "analysis_settings": piwind_settings(settings), "analysis_id": "control_set-parquet"})
    assert result.returncode == 0, result.stdout[-5000:]
    assert_outputs_match(PIWIND / "expected" / "control_set", analysis(piwind_airflow, "control_set-parquet") / "output")
