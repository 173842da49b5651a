"""End-to-end v2 (distributed) runs of PiWind through ``airflow dags test``: the same outputs as v1,
byte for byte, for any chunk counts, and PiWind's expected outputs."""

from __future__ import annotations

import pytest
from conftest import PIWIND, piwind_settings
from outputs import assert_outputs_match, assert_same_files
from test_e2e_piwind import CASES

V1, V2 = "oasislmf_piwind_1_v1", "oasislmf_piwind_1_v2"
SCRATCH_PATHS = ("exposure_info.json", "ri_layers.json")
RI_FILES = CASES["control_set"][1]
#: Every settings file PiWind ships, each with other chunk counts (lookup, losses): one chunk,
#: several, and more chunks than CI's two cores.
CHUNKINGS = [
    ("ALL_output_analysis_settings.json", 1, 1),
    ("FM_analysis_settings.json", 2, 2),
    ("GUL_analysis_settings.json", 1, 3),
    ("ORD_csv_analysis_settings.json", 3, 5),
    ("ORD_parquet_analysis_settings.json", 2, 3),
]


def run_ok(airflow, dag_id: str, conf: dict) -> None:
    result = airflow.dags_test(dag_id, conf)
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-3000:]


def analysis(airflow, analysis_id: str):
    return airflow.storage / "analyses" / analysis_id


def assert_v2_equals_v1(airflow, v1_id: str, v2_id: str) -> None:
    assert_same_files(analysis(airflow, v1_id) / "output", analysis(airflow, v2_id) / "output")
    # Inputs too, but for the two files that record the scratch folder they were written in.
    assert_same_files(analysis(airflow, v1_id) / "input", analysis(airflow, v2_id) / "input", ignore=SCRATCH_PATHS)


@pytest.mark.parametrize(("settings", "lookup", "losses"), CHUNKINGS)
def test_v2_outputs_are_byte_identical_to_v1(piwind_airflow, settings, lookup, losses):
    name = settings.removesuffix("_analysis_settings.json").lower()
    conf = {**RI_FILES, "analysis_settings": piwind_settings(settings)}
    run_ok(piwind_airflow, V1, conf | {"analysis_id": f"{name}-v1"})
    chunking = {"fixed_lookup_chunks": lookup, "fixed_analysis_chunks": losses}
    run_ok(piwind_airflow, V2, conf | {"analysis_id": f"{name}-v2", "chunking": chunking})
    assert_v2_equals_v1(piwind_airflow, f"{name}-v1", f"{name}-v2")
    # Each mapped instance is labelled for the UI, and every chunk ran.
    instances = piwind_airflow.task_instances(V2)
    assert [label for task, _, label, _ in instances if task == "loss_chunk"] == [f"loss chunk {i}/{losses}" for i in range(1, losses + 1)]
    assert [label for task, _, label, _ in instances if task == "lookup_chunk"] == [f"keys chunk {i}/{lookup}" for i in range(1, lookup + 1)]
    assert {state for *_, state in instances} == {"success"}


def test_control_set_with_3_lookup_and_4_loss_chunks_matches_expected_and_v1(piwind_airflow):
    settings, files = CASES["control_set"]
    conf = {**files, "analysis_settings": piwind_settings(settings)}
    run_ok(piwind_airflow, V1, conf | {"analysis_id": "control_set-v1"})
    run_ok(piwind_airflow, V2, conf | {"analysis_id": "control_set-v2", "chunking": {"fixed_lookup_chunks": 3, "fixed_analysis_chunks": 4}})
    assert_outputs_match(PIWIND / "expected" / "control_set", analysis(piwind_airflow, "control_set-v2") / "output")
    assert_v2_equals_v1(piwind_airflow, "control_set-v1", "control_set-v2")
    folder = analysis(piwind_airflow, "control_set-v2")
    assert sorted(p.name for p in folder.iterdir()) == ["input", "logs", "output"]
    # The cleanup removed the run's intermediate files; no scratch folder is left.
    assert not any((piwind_airflow.storage / ".intermediate").iterdir())
    assert not any((piwind_airflow.storage / ".work").iterdir())


def test_dynamic_chunking_follows_the_reference_formula(piwind_airflow):
    settings, files = CASES["case_1"]
    conf = {**files, "analysis_settings": piwind_settings(settings), "analysis_id": "case_1-dynamic"}
    run_ok(piwind_airflow, V2, conf | {"chunking": {"lookup_strategy": "DYNAMIC_CHUNKS", "loss_strategy": "DYNAMIC_CHUNKS"}})
    assert_outputs_match(PIWIND / "expected" / "case_1", analysis(piwind_airflow, "case_1-dynamic") / "output")
    instances = piwind_airflow.task_instances(V2)
    # PiWind: 10 locations / 10000 per lookup chunk -> 1; 1447 events / 100 per loss chunk (its
    # chunking_configuration.json) -> 15.
    assert sum(task == "lookup_chunk" for task, *_ in instances) == 1
    assert sum(task == "loss_chunk" for task, *_ in instances) == 15


def test_generate_inputs_then_run(piwind_airflow):
    settings, files = CASES["case_0"]
    run_ok(piwind_airflow, V2, {**files, "action": "generate_inputs", "analysis_id": "case_0-v2", "chunking": {"fixed_lookup_chunks": 2}})
    folder = analysis(piwind_airflow, "case_0-v2")
    assert (folder / "input" / "items.bin").is_file() and not (folder / "output").exists()
    run_ok(piwind_airflow, V2, {"action": "run", "analysis_id": "case_0-v2", "analysis_settings": piwind_settings(settings), "chunking": {"fixed_analysis_chunks": 2}})
    assert_outputs_match(PIWIND / "expected" / "case_0", folder / "output")


@pytest.mark.parametrize(
    ("conf", "message"),
    [
        ({"location_file": "../outside.csv"}, "location_file: '../outside.csv' is outside the storage root"),
        ({"location_file": "exposure/missing.csv"}, "location_file: "),
        ({"chunking": {"fixed_analysis_chunks": 0}}, "chunking: fixed_analysis_chunks must be an integer >= 1"),
        ({"chunking": {"fixed_lookup_chunks": 5000}}, "chunking: fixed_lookup_chunks must be at most 1024"),
        ({"analysis_settings": {"model_settings": {"event_set": "nope"}}}, "analysis_settings:"),
    ],
)
def test_bad_input_fails_in_prepare_and_publishes_nothing(piwind_airflow, conf, message):
    base = {"location_file": "exposure/SourceLocOEDPiWind10.csv", "analysis_settings": piwind_settings("GUL_analysis_settings.json")}
    result = piwind_airflow.dags_test(V2, base | conf | {"analysis_id": "bad-v2"})
    assert result.returncode != 0
    assert message in result.stdout + result.stderr
    states = {task: state for task, _, _, state in piwind_airflow.task_instances(V2)}
    assert states["prepare"] == "failed" and states["aggregate"] == "upstream_failed"
    assert not analysis(piwind_airflow, "bad-v2").exists()
    assert not (piwind_airflow.storage / ".intermediate" / "bad-v2").exists()
