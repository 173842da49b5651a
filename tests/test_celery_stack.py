"""The production stack on PostgreSQL and Redis, started by ``make celery-up``'s launcher: REST
triggers with a token, tasks on their model's queues and workers, one job at a time per v1 worker,
oasislmf's own client through the Oasis API, and runs that survive a worker killed mid-chunk and a
scheduler restart."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from harness.celery_stack import CeleryStack
from harness.oasis_client import Oasis, api_run, login_file
from harness.outputs import assert_outputs_match, assert_same_files
from harness.piwind import CASES, LOCATIONS_10, PIWIND, V1_DAG, V2_DAG, piwind_workspace
from harness.polling import poll_until
from harness.rest import RestError

pytestmark = pytest.mark.stack

V1_QUEUE, V2_QUEUE = "OasisLMF-PiWind-1", "OasisLMF-PiWind-1-v2"
#: The launcher's worker services (``oasis_ops.deploy.stack``: ``worker-<queue as a slug>``).
WORKERS = {V1_QUEUE: "worker-oasislmf-piwind-1", V2_QUEUE: "worker-oasislmf-piwind-1-v2"}
GENERATE = {"location_file": LOCATIONS_10, "action": "generate_inputs"}
CONTROL_SET = CASES["control_set"]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, piwind_root: Path):
    base = tmp_path_factory.mktemp("celery")
    storage, registry = piwind_workspace(base)
    stack = CeleryStack(base, registry, storage, password="celery-test")
    stack.up()
    try:
        yield stack
    finally:
        stack.down()


@pytest.fixture(scope="module")
def control_set_v1(stack: CeleryStack) -> Path:
    """PiWind's control set through v1 on the stack, once: the output v2 runs must equal byte for byte."""
    started = time.monotonic()
    stack.rest.trigger(V1_DAG, "cs-v1", CONTROL_SET.conf("cs-v1"))
    assert stack.rest.wait(V1_DAG, "cs-v1") == "success"
    print(f"\ncontrol set, v1 triggered over REST: {time.monotonic() - started:.0f} s from trigger to success")
    output = stack.storage / "analyses" / "cs-v1" / "output"
    assert_outputs_match(CONTROL_SET.expected, output)
    return output


def test_a_trigger_without_a_token_is_refused(stack):
    runs_before = len(stack.rest.dag_runs(V1_DAG))
    with pytest.raises(RestError) as refused:
        stack.rest.request("POST", f"/api/v2/dags/{V1_DAG}/dagRuns", {"logical_date": None, "conf": {}}, authenticated=False)
    assert refused.value.status == 401
    assert len(stack.rest.dag_runs(V1_DAG)) == runs_before


def test_v1_and_v2_over_rest_match_expected_on_their_queues_and_workers(stack, control_set_v1):
    rest = stack.rest
    rest.trigger(V2_DAG, "cs-v2", CONTROL_SET.conf("cs-v2", chunking={"fixed_lookup_chunks": 3, "fixed_analysis_chunks": 4}))
    assert rest.wait(V2_DAG, "cs-v2") == "success"
    v2_output = stack.storage / "analyses" / "cs-v2" / "output"
    assert_outputs_match(CONTROL_SET.expected, v2_output)
    assert_same_files(control_set_v1, v2_output)
    # Each task ran on its model's queue, and on the worker serving that queue.
    for dag_id, run_id, queue in ((V1_DAG, "cs-v1", V1_QUEUE), (V2_DAG, "cs-v2", V2_QUEUE)):
        ran = [t for t in rest.task_instances(dag_id, run_id) if t["state"] == "success"]
        assert ran and {t["queue"] for t in ran} == {queue}
        other = WORKERS[V1_QUEUE if queue == V2_QUEUE else V2_QUEUE]
        for task in ran:
            where = f"dag_id={dag_id}/run_id={run_id}/task_id={task['task_id']}/"
            assert where in stack.log(WORKERS[queue])
            assert where not in stack.log(other)


def test_oasislmf_api_run_v1_and_v2_equal_the_native_run(stack, control_set_v1, tmp_path):
    """The real client against the Celery stack's ``/oasis``: each version runs its DAG on its queue."""
    oasis = Oasis.login(stack.oasis_url, "admin", stack.password)
    model_id = oasis.model_id("OasisLMF", "PiWind", "1")
    login = login_file(tmp_path, "admin", stack.password)
    settings = PIWIND / "analysis_settings" / CONTROL_SET.settings_file
    v1 = api_run(stack, login, tmp_path / "v1", "v1", model_id, CONTROL_SET.files, settings)
    v2 = api_run(stack, login, tmp_path / "v2", "v2", model_id, CONTROL_SET.files, settings, "--lookup-chunks", "2", "--analysis-chunks", "2")
    assert_same_files(control_set_v1, v1.output)
    assert_same_files(control_set_v1, v2.output)
    for dag_id, analysis, queue in ((V1_DAG, v1, V1_QUEUE), (V2_DAG, v2, V2_QUEUE)):
        runs = [r for r in stack.rest.dag_runs(dag_id) if r["conf"].get("analysis_id") == f"oasis-api-{analysis.analysis_id}"]
        assert {r["state"] for r in runs} == {"success"} and len(runs) == 2  # generate_inputs, then run
        tasks = [t for r in runs for t in stack.rest.task_instances(dag_id, r["dag_run_id"])]
        assert {t["queue"] for t in tasks} == {queue}


def test_workers_import_oasislmf_before_forking_the_task_processes(stack):
    """Each model worker imported oasislmf (and so numba) as it started: the task processes Airflow forks
    from it inherit the modules instead of importing them per task. The maintenance worker too (one
    configuration for all), while the scheduler, which only sends tasks, did not."""
    pids = stack.pids()
    for worker in (*WORKERS.values(), "worker-maintenance"):
        assert "/numba/" in Path(f"/proc/{pids[worker]}/maps").read_text(), f"{worker} did not preload oasislmf"
    assert "/numba/" not in Path(f"/proc/{pids['scheduler']}/maps").read_text()


def test_two_v1_runs_on_one_v1_worker_run_one_after_the_other(stack):
    rest = stack.rest
    rest.trigger(V1_DAG, "seq-1", GENERATE | {"analysis_id": "seq-1"})
    rest.trigger(V1_DAG, "seq-2", GENERATE | {"analysis_id": "seq-2"})
    assert rest.wait(V1_DAG, "seq-1") == "success" and rest.wait(V1_DAG, "seq-2") == "success"
    (first,), (second,) = rest.task_instances(V1_DAG, "seq-1"), rest.task_instances(V1_DAG, "seq-2")
    earlier, later = sorted([first, second], key=lambda t: t["start_date"])
    assert earlier["end_date"] <= later["start_date"]


def test_priority_orders_runs_waiting_for_the_v1_worker(stack):
    rest = stack.rest
    rest.trigger(V1_DAG, "prio-busy", CONTROL_SET.conf("prio-busy", priority=5))
    rest.wait_for_task(V1_DAG, "prio-busy", "running", task_id="run_analysis")
    # The v1 worker is busy; three runs arrive, the lowest priority first, and wait. Its pool (the model's
    # pool and queue share a name) is closed meanwhile, so that they wait however long the busy run
    # takes; reopened, the waiting tasks leave by priority.
    waiting = [("prio-low", 2), ("prio-mid", 6), ("prio-top", 9)]
    slots = rest.pools()[V1_QUEUE]
    try:
        rest.set_pool_slots(V1_QUEUE, 0)
        for run_id, priority in waiting:
            rest.trigger(V1_DAG, run_id, GENERATE | {"analysis_id": run_id, "priority": priority})
        for run_id, _ in waiting:
            rest.wait_for_task(V1_DAG, run_id, "scheduled")
    finally:
        rest.set_pool_slots(V1_QUEUE, slots)
    for run_id in ("prio-busy", *(r for r, _ in waiting)):
        assert rest.wait(V1_DAG, run_id) == "success"
    starts = {run_id: rest.task_instances(V1_DAG, run_id)[0]["start_date"] for run_id, _ in waiting}
    assert starts["prio-top"] < starts["prio-mid"] < starts["prio-low"]


def test_a_worker_killed_mid_chunk_and_a_scheduler_restart_do_not_lose_the_run(stack, control_set_v1):
    rest = stack.rest
    # A second v2 worker (as `--scale` would add), then SIGKILL the first in the middle of a loss chunk.
    stack.add_worker("worker-extra-v2", V2_QUEUE, 2)
    rest.trigger(V2_DAG, "killed", CONTROL_SET.conf("killed", chunking={"fixed_analysis_chunks": 6}))
    (running, *_) = rest.wait_for_task(V2_DAG, "killed", "running", task_id="loss_chunk")
    where = f"run_id=killed/task_id=loss_chunk/map_index={running['map_index']}/attempt=1"
    # The worker that took the chunk logs it as it starts it.
    (victim,) = poll_until(
        lambda: [name for name in (WORKERS[V2_QUEUE], "worker-extra-v2") if where in stack.log(name)], 60, f"no worker logged {where}", 0.5
    )
    stack.kill(victim)
    stack.restart("scheduler")
    assert rest.wait(V2_DAG, "killed") == "success"
    tries = {t["map_index"]: t["try_number"] for t in rest.task_instances(V2_DAG, "killed") if t["task_id"] == "loss_chunk"}
    assert tries[running["map_index"]] >= 2, "the chunk lost with its worker was retried on a live one"
    killed = stack.storage / "analyses" / "killed" / "output"
    assert_same_files(control_set_v1, killed)
    assert_outputs_match(CONTROL_SET.expected, killed)


def test_the_storage_hygiene_dag_runs_on_the_maintenance_worker(stack):
    """Its task goes to Airflow's default queue, which only the stack's maintenance worker serves."""
    rest = stack.rest
    rest.trigger("oasis_storage_hygiene", "sweep", {})
    assert rest.wait("oasis_storage_hygiene", "sweep", timeout=300) == "success"
    (task,) = rest.task_instances("oasis_storage_hygiene", "sweep")
    assert task["queue"] == "default"
    assert "dag_id=oasis_storage_hygiene/run_id=sweep/task_id=remove_leftovers/" in stack.log("worker-maintenance")
