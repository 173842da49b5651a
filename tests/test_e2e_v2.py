"""End-to-end v2 (distributed) runs of PiWind through ``airflow dags test``: the same outputs as v1,
byte for byte, for any chunk counts, and PiWind's expected outputs."""

from __future__ import annotations

import pytest

from harness.airflow_home import output_tail
from harness.outputs import assert_no_results, assert_outputs_match, assert_same_analysis
from harness.piwind import CASES, LOCATIONS_10, RI_FILES, V1_DAG, V2_DAG, piwind_settings
from oasis_ops.constants import Mode

pytestmark = pytest.mark.e2e

#: Every settings file PiWind ships, each with other chunk counts (lookup, losses): one chunk,
#: several, and more chunks than CI's two cores.
CHUNKINGS = [
    ("ALL_output_analysis_settings.json", 1, 1),
    ("FM_analysis_settings.json", 2, 2),
    ("GUL_analysis_settings.json", 1, 3),
    ("ORD_csv_analysis_settings.json", 3, 5),
    ("ORD_parquet_analysis_settings.json", 2, 3),
]


@pytest.mark.parametrize(("settings", "lookup", "losses"), CHUNKINGS)
def test_v2_outputs_are_byte_identical_to_v1(piwind_airflow, settings, lookup, losses):
    name = settings.removesuffix("_analysis_settings.json").lower()
    conf = {**RI_FILES, "analysis_settings": piwind_settings(settings)}
    piwind_airflow.dags_test_ok(V1_DAG, conf | {"analysis_id": f"{name}-v1"})
    chunking = {"fixed_lookup_chunks": lookup, "fixed_analysis_chunks": losses}
    piwind_airflow.dags_test_ok(V2_DAG, conf | {"analysis_id": f"{name}-v2", "chunking": chunking})
    assert_same_analysis(piwind_airflow.analysis(f"{name}-v1"), piwind_airflow.analysis(f"{name}-v2"))
    # Each mapped instance is labelled for the UI, and every chunk ran.
    instances = piwind_airflow.task_instances(V2_DAG)
    assert [t.label for t in instances if t.task_id == "loss_chunk"] == [f"loss chunk {i}/{losses}" for i in range(1, losses + 1)]
    assert [t.label for t in instances if t.task_id == "lookup_chunk"] == [f"keys chunk {i}/{lookup}" for i in range(1, lookup + 1)]
    assert {t.state for t in instances} == {"success"}


def test_control_set_with_3_lookup_and_4_loss_chunks_matches_expected_and_v1(piwind_airflow):
    case = CASES["control_set"]
    piwind_airflow.dags_test_ok(V1_DAG, case.conf("control_set-v1"))
    piwind_airflow.dags_test_ok(V2_DAG, case.conf("control_set-v2", chunking={"fixed_lookup_chunks": 3, "fixed_analysis_chunks": 4}))
    folder = piwind_airflow.analysis("control_set-v2")
    assert_outputs_match(case.expected, folder / "output")
    assert_same_analysis(piwind_airflow.analysis("control_set-v1"), folder)
    assert sorted(p.name for p in folder.iterdir()) == ["input", "logs", "output"]
    # The aggregate removed the run's intermediate files; no scratch folder is left.
    assert not any((piwind_airflow.storage / ".intermediate").iterdir())
    assert not any((piwind_airflow.storage / ".work").iterdir())


def test_dynamic_chunking_follows_the_reference_formula(piwind_airflow):
    case = CASES["case_1"]
    # The platform's formula alone: without our floor on a loss chunk's work (which would make it 1 chunk).
    dynamic = {"lookup_strategy": "DYNAMIC_CHUNKS", "loss_strategy": "DYNAMIC_CHUNKS", "min_chunk_ground_up_samples": 0}
    piwind_airflow.dags_test_ok(V2_DAG, case.conf("case_1-dynamic", chunking=dynamic))
    assert_outputs_match(case.expected, piwind_airflow.analysis("case_1-dynamic") / "output")
    instances = piwind_airflow.task_instances(V2_DAG)
    # PiWind: 10 locations / 10000 per lookup chunk -> 1; 1447 events / 100 per loss chunk (its
    # chunking_configuration.json) -> 15.
    assert sum(t.task_id == "lookup_chunk" for t in instances) == 1
    assert sum(t.task_id == "loss_chunk" for t in instances) == 15


def test_dynamic_loss_chunks_of_a_tiny_run_are_capped_by_the_floor(piwind_airflow):
    """PiWind's 10 locations come to ~9e4 ground-up samples, far below the default floor of 5e7 a chunk:
    one loss chunk where the platform's formula gives 15, and still the expected outputs."""
    case = CASES["case_1"]
    result = piwind_airflow.dags_test_ok(V2_DAG, case.conf("case_1-floor", chunking={"loss_strategy": "DYNAMIC_CHUNKS"}))
    assert_outputs_match(case.expected, piwind_airflow.analysis("case_1-floor") / "output")
    assert [t.label for t in piwind_airflow.task_instances(V2_DAG) if t.task_id == "loss_chunk"] == ["loss chunk 1/1"]
    assert "1447 events -> 1 loss chunk(s) (DYNAMIC_CHUNKS, capped: ~" in result.stdout + result.stderr, output_tail(result)


def test_fill_pool_slots_rounds_the_loss_chunks_up_to_the_pool_and_keeps_v1s_outputs(piwind_airflow, piwind_model):
    """PiWind's v2 pool has 2 slots (one worker running two chunks): 3 loss chunks become 4."""
    assert piwind_model.pool_slots(Mode.V2) == 2
    case = CASES["case_0"]
    piwind_airflow.dags_test_ok(V1_DAG, case.conf("fill-v1"))
    piwind_airflow.dags_test_ok(V2_DAG, case.conf("fill-v2", chunking={"fixed_analysis_chunks": 3, "fill_pool_slots": True}))
    assert_same_analysis(piwind_airflow.analysis("fill-v1"), piwind_airflow.analysis("fill-v2"))
    chunks = [t.label for t in piwind_airflow.task_instances(V2_DAG) if t.task_id == "loss_chunk"]
    assert chunks == [f"loss chunk {i}/4" for i in range(1, 5)]


def test_generate_inputs_then_run(piwind_airflow):
    case = CASES["case_0"]
    piwind_airflow.dags_test_ok(
        V2_DAG, {**case.files, "action": "generate_inputs", "analysis_id": "case_0-v2", "chunking": {"fixed_lookup_chunks": 2}}
    )
    folder = piwind_airflow.analysis("case_0-v2")
    assert (folder / "input" / "items.bin").is_file() and not (folder / "output").exists()
    run = {"action": "run", "analysis_id": "case_0-v2", "analysis_settings": case.settings(), "chunking": {"fixed_analysis_chunks": 2}}
    piwind_airflow.dags_test_ok(V2_DAG, run)
    assert_outputs_match(case.expected, folder / "output")


#: Bad input (each conf replaces part of a good one) and the whole reason the run fails with;
#: ``{root}`` is the storage root's URI.
BAD_INPUT = {
    "outside": (
        {"location_file": "../outside.csv"},
        "location_file: '../outside.csv' is outside the storage root {root}; give a path relative to it",
    ),
    "missing": ({"location_file": "exposure/missing.csv"}, "location_file: {root}/exposure/missing.csv does not exist in the storage root"),
    "no-loss-chunks": ({"chunking": {"fixed_analysis_chunks": 0}}, "chunking: fixed_analysis_chunks must be an integer >= 1, got 0"),
    "too-many-lookup-chunks": ({"chunking": {"fixed_lookup_chunks": 5000}}, "chunking: fixed_lookup_chunks must be at most 1024, got 5000"),
    "event-set": (
        {"analysis_settings": piwind_settings("GUL_analysis_settings.json") | {"model_settings": {"event_set": "nope"}}},
        "analysis_settings: model_settings.event_set 'nope' is not an event set of OasisLMF/PiWind/1; choose one of ['p']",
    ),
}


@pytest.mark.parametrize("case", BAD_INPUT)
def test_bad_input_fails_in_prepare_and_publishes_nothing(piwind_airflow, case):
    conf, reason = BAD_INPUT[case]
    analysis_id = f"bad-v2-{case}"
    good = {"location_file": LOCATIONS_10, "analysis_settings": piwind_settings("GUL_analysis_settings.json")}
    result = piwind_airflow.dags_test(V2_DAG, good | conf | {"analysis_id": analysis_id})
    assert result.returncode == 1 and result.stderr.rstrip().endswith("DagRun failed"), output_tail(result)
    reason = reason.format(root=f"file://{piwind_airflow.storage}")
    assert reason in result.stdout + result.stderr, output_tail(result)
    states = {t.task_id: t.state for t in piwind_airflow.task_instances(V2_DAG)}
    assert states["prepare"] == "failed" and states["aggregate"] == "upstream_failed"
    # No results; prepare's error report (for the Oasis API) gives the reason.
    ((report, text),) = assert_no_results(piwind_airflow.analysis(analysis_id)).items()
    assert report.endswith("/prepare.txt") and f"\nOasisInputError: {reason}\n" in text
    assert not (piwind_airflow.storage / ".intermediate" / analysis_id).exists()
