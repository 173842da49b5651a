"""Load on the production stack (``make celery-up``: PostgreSQL, Redis) with one v1 and two v2 workers:
twenty PiWind analyses, v1 and v2 mixed, priorities 1 to 10, triggered at once. All succeed with the
outputs of the same analysis run alone (PiWind's expected outputs, and byte for byte between the runs
of one case), work waiting for a pool slot leaves in priority order, and no task runs twice. Prints
the total time and the stack's peak memory."""

from __future__ import annotations

import itertools
import json
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from harness.celery_stack import CeleryStack
from harness.memory import PeakMemory
from harness.outputs import assert_outputs_match, assert_same_files
from harness.piwind import CASES, PIWIND, V1_DAG, V2_DAG, piwind_workspace
from harness.polling import poll_until
from harness.rest import FINISHED, RestClient

pytestmark = pytest.mark.stack

V1_QUEUE, V2_QUEUE = "OasisLMF-PiWind-1", "OasisLMF-PiWind-1-v2"
SECOND_V2_WORKER = "worker-oasislmf-piwind-1-v2-second"
#: (priority, PiWind case) of the v1 and of the v2 analyses: priorities 1 to 10, in an order unrelated
#: to the trigger order. Mostly v1 and case_0 (GUL), the cheapest (a v2 analysis starts seven task
#: processes): twenty must fit CI's budget on two cores. case_1 (IL) and the control set (RI) run among them.
V1_RUNS = [(3, "case_0"), (9, "case_1"), (1, "case_0"), (6, "case_0"), (10, "case_0"), (4, "case_0"), (7, "case_0"), (2, "case_0"),
           (8, "case_0"), (5, "case_0"), (6, "case_0"), (3, "case_0"), (9, "case_0"), (1, "case_0"), (5, "case_0"), (8, "case_0")]
V2_RUNS = [(7, "case_0"), (2, "case_0"), (10, "control_set"), (4, "case_0")]
V2_CHUNKING = {"fixed_lookup_chunks": 1, "fixed_analysis_chunks": 1}
#: Longest the twenty may take together: far above what they take (see the README), so that only a
#: stuck run fails the test. On a new machine they run beside the worker image's first build and numba's
#: first compile of every kernel: 25 min were not enough there (the first v1 analysis alone took 16 min).
DEADLINE = 2400


def analyses() -> list[tuple[str, str, str, int]]:
    """(run id = analysis id, DAG, case, priority) of the twenty analyses, in trigger order: v1 and v2
    alternately, then the remaining v1 ones."""
    v1 = [(f"load-v1-{i}", V1_DAG, case, priority) for i, (priority, case) in enumerate(V1_RUNS)]
    v2 = [(f"load-v2-{i}", V2_DAG, case, priority) for i, (priority, case) in enumerate(V2_RUNS)]
    alternating = [run for pair in zip(v1, v2, strict=False) for run in pair]
    return alternating + v1[len(v2) :]


def piwind_with_two_v2_workers(base: Path) -> Path:
    """PiWind deployed with two v2 workers each running one task at a time (``worker_count_fixed`` 2,
    ``v2_worker_concurrency`` 1: two cores are all there is), so that its v2 pool lets two tasks out and
    the rest waits. PiWind's own files, linked, with that scaling configuration."""
    root = base / "piwind-2-workers"
    (root / "meta-data").mkdir(parents=True)
    for item in PIWIND.iterdir():
        if item.name != "meta-data":
            (root / item.name).symlink_to(item)
    for item in (PIWIND / "meta-data").iterdir():
        if item.name != "scaling_configuration.json":
            (root / "meta-data" / item.name).symlink_to(item)
    scaling = json.loads((PIWIND / "meta-data" / "scaling_configuration.json").read_text())
    (root / "meta-data" / "scaling_configuration.json").write_text(json.dumps(scaling | {"worker_count_fixed": 2, "v2_worker_concurrency": 1}))
    return root


@pytest.fixture
def stack(tmp_path: Path, piwind_root: Path):
    """The launcher's workers (one per queue) and a second v2 worker; the v1 pool resized to its one worker."""
    storage, registry = piwind_workspace(tmp_path, path=str(piwind_with_two_v2_workers(tmp_path)))
    stack = CeleryStack(tmp_path / "celery", registry, storage, password="celery-load")
    stack.up()
    try:
        stack.add_worker(SECOND_V2_WORKER, V2_QUEUE, 1)
        stack.rest.set_pool_slots(V1_QUEUE, 1)
        yield stack
    finally:
        stack.down()


def wait_all(rest: RestClient) -> dict[str, str]:
    """Each run's final state (by run id), once every run has one: two listings per poll, not one
    request per run, so that watching does not load the stack."""

    def finished() -> dict[str, str] | None:
        states = {run["dag_run_id"]: run["state"] for dag_id in (V1_DAG, V2_DAG) for run in rest.dag_runs(dag_id)}
        return states if len(states) == len(analyses()) and set(states.values()) <= set(FINISHED) else None

    return poll_until(finished, DEADLINE, "the twenty analyses did not all finish", 5)


def assert_waiting_work_left_in_priority_order(instances: list[dict[str, Any]]) -> int:
    """Of two task instances of one queue (its pool) both ready before either was sent to a worker, the
    higher priority was sent first (or with it). Returns how many such pairs there were."""
    pairs = 0
    by_queue = defaultdict(list)
    for ti in instances:
        by_queue[ti["queue"]].append(ti | {key: datetime.fromisoformat(ti[key]) for key in ("scheduled_when", "queued_when")})
    for queue, tis in by_queue.items():
        for high, low in itertools.permutations(tis, 2):
            if high["priority_weight"] > low["priority_weight"] and high["scheduled_when"] < low["queued_when"]:
                pairs += 1
                assert high["queued_when"] <= low["queued_when"], (
                    f"{queue}: {low['dag_run_id']} {low['task_id']} (priority {low['priority_weight']}) left at {low['queued_when']}, "
                    f"before {high['dag_run_id']} {high['task_id']} (priority {high['priority_weight']}), waiting since {high['scheduled_when']}"
                )
    return pairs


def test_twenty_analyses_at_once_all_succeed_alike_in_priority_order_each_task_once(stack, record_property):
    rest = stack.rest
    assert (rest.pools()[V1_QUEUE], rest.pools()[V2_QUEUE]) == (1, 2)
    poll_until(lambda: rest.has_dags([V1_DAG, V2_DAG]), 180, "the PiWind DAGs were not parsed")
    runs = analyses()
    rest.token()
    started = time.monotonic()
    with PeakMemory(lambda: list(stack.pids().values()), interval=0.5) as memory:
        for run_id, dag_id, case, priority in runs:
            chunking = {"chunking": V2_CHUNKING} if dag_id == V2_DAG else {}
            rest.trigger(dag_id, run_id, CASES[case].conf(run_id, priority=priority, **chunking))
        states = wait_all(rest)
    total = time.monotonic() - started
    record_property("total_seconds", round(total, 1))
    record_property("peak_memory_mib", round(memory.peak / 2**20))
    print(f"\n20 analyses: {total:.0f} s, peak memory {memory.peak / 2**20:,.0f} MiB above the idle stack's {memory.baseline / 2**20:,.0f} MiB")
    assert states == {run_id: "success" for run_id, *_ in runs}

    # Each output equals the same analysis run alone: PiWind's expected outputs, and every run of a case alike.
    first_of_case: dict[str, Path] = {}
    for run_id, _, case, _ in runs:
        output = stack.storage / "analyses" / run_id / "output"
        assert_outputs_match(CASES[case].expected, output)
        assert_same_files(first_of_case.setdefault(case, output), output)

    instances = [ti for run_id, dag_id, *_ in runs for ti in rest.task_instances(dag_id, run_id)]
    assert {(ti["state"], ti["try_number"]) for ti in instances} == {("success", 1)}, "every task ran once"
    assert {ti["priority_weight"] for ti in instances} == set(range(1, 11))
    assert assert_waiting_work_left_in_priority_order(instances) >= 20
    # Both v2 workers took work.
    for worker in ("worker-oasislmf-piwind-1-v2", SECOND_V2_WORKER):
        assert f"dag_id={V2_DAG}/" in stack.log(worker), f"{worker} ran no task"
    for task_id in ("run_analysis", "prepare"):
        started_order = [t["priority_weight"] for t in sorted((t for t in instances if t["task_id"] == task_id), key=lambda t: t["start_date"])]
        print(f"priorities of the {task_id} tasks in the order they started: {started_order}")
