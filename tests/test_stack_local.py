"""The DAGs on a real scheduler (LocalExecutor, one task at a time): the run's priority orders the
waiting tasks across v1 and v2 runs, clearing one failed loss chunk over the REST API, as the UI
does, resumes the run with outputs identical to v1, and an asset event starts a scheduled analysis."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.airflow_home import AirflowHome
from harness.local_stack import LocalStack
from harness.outputs import assert_outputs_match, assert_same_files
from harness.piwind import CASES, LOCATIONS_10, V1_DAG, V2_DAG, piwind_workspace
from harness.polling import poll_until

pytestmark = pytest.mark.stack

#: A scheduled analysis that runs whenever the portfolio's location file is updated (an asset event).
ON_NEW_PORTFOLIO = {
    "name": "on_new_portfolio",
    "asset": LOCATIONS_10,
    "params": {"location_file": LOCATIONS_10, "action": "generate_inputs", "analysis_id": "on-new-portfolio"},
}
ON_NEW_PORTFOLIO_DAG = "oasislmf_piwind_1_v1__on_new_portfolio"
#: The product's PiWind DAGs, with loss chunk 2 of a v2 run failing while a marker file exists.
FLAKY_DAGS = '''
import os

from airflow.sdk.exceptions import AirflowFailException

from oasis_ops.dag_factory import register_dags

register_dags(globals())
_chunk = globals()["oasislmf_piwind_1_v2"].get_task("loss_chunk")
_run_chunk = _chunk.python_callable


def _flaky(chunk, **context):
    if chunk["index"] == 1 and os.path.exists(os.environ["OASIS_TEST_FAIL_MARKER"]):
        raise AirflowFailException("injected failure of loss chunk 2")
    return _run_chunk(chunk, **context)


_chunk.python_callable = _flaky
'''
GENERATE = {"location_file": LOCATIONS_10, "action": "generate_inputs"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, piwind_root: Path):
    base = tmp_path_factory.mktemp("stack")
    storage, registry = piwind_workspace(base, analyses=[ON_NEW_PORTFOLIO])
    dags = base / "dags"
    dags.mkdir()
    (dags / "oasis_models_flaky.py").write_text(FLAKY_DAGS)
    airflow = AirflowHome.create(base / "airflow", registry, storage)
    with LocalStack(airflow, dags, "stack-test", {"OASIS_TEST_FAIL_MARKER": str(base / "fail-chunk-2")}) as stack:
        stack.start([V1_DAG, V2_DAG, ON_NEW_PORTFOLIO_DAG])
        yield stack


#: PiWind's pools: one v1 worker (1 slot) and a v2 worker running 2 tasks at once.
V1_POOL, V2_POOL = "OasisLMF-PiWind-1", "OasisLMF-PiWind-1-v2"


def test_priority_orders_waiting_tasks_across_v1_and_v2_runs(stack):
    rest = stack.rest
    assert {name: slots for name, slots in rest.pools().items() if name.startswith("OasisLMF")} == {V1_POOL: 1, V2_POOL: 2}
    # Runs arrive, the lowest priority first, while both pools are closed (0 slots): all of them wait,
    # however fast the machine. Reopened with one slot each, the waiting tasks leave by priority.
    waiting = [(V1_DAG, "v1-low", 2), (V1_DAG, "v1-mid", 6), (V1_DAG, "v1-top", 9), (V2_DAG, "v2-low", 2), (V2_DAG, "v2-top", 9)]
    try:
        for pool in (V1_POOL, V2_POOL):
            rest.set_pool_slots(pool, 0)
        for dag_id, run_id, priority in waiting:
            rest.trigger(dag_id, run_id, GENERATE | {"analysis_id": f"prio-{run_id}", "priority": priority})
        for dag_id, run_id, _ in waiting:
            rest.wait_for_task(dag_id, run_id, "scheduled")
        for pool in (V1_POOL, V2_POOL):
            rest.set_pool_slots(pool, 1)
        for dag_id, run_id, _ in waiting:
            assert rest.wait(dag_id, run_id) == "success", run_id
    finally:
        rest.set_pool_slots(V1_POOL, 1)
        rest.set_pool_slots(V2_POOL, 2)

    first_start = {}
    for dag_id, run_id, priority in waiting:
        instances = rest.task_instances(dag_id, run_id)
        assert {ti["priority_weight"] for ti in instances} == {priority}  # every task weighs its run's priority
        first_start[run_id] = min(ti["start_date"] for ti in instances if ti["start_date"] is not None)
    assert first_start["v1-top"] < first_start["v1-mid"] < first_start["v1-low"]
    assert first_start["v2-top"] < first_start["v2-low"]


def test_clearing_one_failed_chunk_resumes_the_run(stack):
    rest, storage = stack.rest, stack.airflow.storage
    marker = Path(stack.extra_env["OASIS_TEST_FAIL_MARKER"])
    case = CASES["case_1"]
    marker.touch()
    rest.trigger(V2_DAG, "resume", case.conf("resume-v2", chunking={"fixed_lookup_chunks": 2, "fixed_analysis_chunks": 3}))
    assert rest.wait(V2_DAG, "resume") == "failed"
    states = {(ti["task_id"], ti["map_index"]): ti["state"] for ti in rest.task_instances(V2_DAG, "resume")}
    assert states[("loss_chunk", 1)] == "failed" and states[("loss_chunk", 0)] == states[("loss_chunk", 2)] == "success"
    assert states[("aggregate", -1)] == "upstream_failed"
    intermediate = storage / ".intermediate" / "resume-v2"
    assert any(intermediate.iterdir()), "a failed run keeps its intermediate files for a resume"
    assert not (storage / "analyses" / "resume-v2" / "output").exists()

    marker.unlink()
    rest.clear_task_instances(V2_DAG, "resume", ("loss_chunk", 1))
    assert rest.wait(V2_DAG, "resume") == "success"
    tries = {(ti["task_id"], ti["map_index"]): ti["try_number"] for ti in rest.task_instances(V2_DAG, "resume")}
    # Only the cleared chunk ran again, then what follows it (the aggregate had not run: it now
    # publishes the outputs and removes the intermediate files).
    assert tries[("loss_chunk", 1)] == 2 and tries[("aggregate", -1)] == 1
    assert tries[("loss_chunk", 0)] == tries[("loss_chunk", 2)] == tries[("prepare", -1)] == 1
    assert not intermediate.exists()

    rest.trigger(V1_DAG, "resume-v1", case.conf("resume-v1"))
    assert rest.wait(V1_DAG, "resume-v1") == "success"
    analyses = storage / "analyses"
    assert_outputs_match(case.expected, analyses / "resume-v2" / "output")
    assert_same_files(analyses / "resume-v1" / "output", analyses / "resume-v2" / "output")


def test_an_asset_event_on_the_portfolio_runs_its_scheduled_analysis(stack):
    rest = stack.rest
    uri = f"file://{stack.airflow.storage}/{LOCATIONS_10}"
    (asset, *_) = poll_until(lambda: rest.assets(uri), 120, f"asset {uri} not registered")
    # What a portfolio upload (or a producer task with the asset as an outlet) records:
    rest.create_asset_event(asset["id"])
    (run, *_) = poll_until(lambda: rest.dag_runs(ON_NEW_PORTFOLIO_DAG), 240, "the asset event started no run")
    assert rest.wait(ON_NEW_PORTFOLIO_DAG, run["dag_run_id"]) == "success"
    # It ran with its declared parameters: inputs only, under its analysis id.
    inputs = stack.airflow.storage / "analyses" / "on-new-portfolio" / "input"
    assert (inputs / "items.bin").is_file() and not (inputs.parent / "output").exists()
