"""The production stack on PostgreSQL and Redis, started by ``make celery-up``'s launcher: REST
triggers with a token, tasks on their model's queues and workers, one job at a time per v1 worker,
and runs that survive a worker killed mid-chunk and a scheduler restart."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
from airflow_cli import BIN, REPO
from airflow_stack import free_port
from conftest import PIWIND, piwind_settings, piwind_workspace
from outputs import assert_outputs_match, assert_same_files
from test_e2e_piwind import CASES

V1, V2 = "oasislmf_piwind_1_v1", "oasislmf_piwind_1_v2"
V1_QUEUE, V2_QUEUE = "OasisLMF-PiWind-1", "OasisLMF-PiWind-1-v2"
PASSWORD = "celery-test"


class CeleryStack:
    def __init__(self, base: Path) -> None:
        self.base, self.port, self.database = base, free_port(), f"oasis_test_{uuid.uuid4().hex[:8]}"
        self.storage = base / "storage"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__", "OASIS_"))} | {
            "AIRFLOW_HOME": str(base / "airflow"),
            "PYTHONPATH": str(REPO / "plugins"),
            "OASIS_MODEL_REGISTRY": str(base / "registry.yaml"),
            "OASIS_STORAGE_ROOT": str(self.storage),
            "OASIS_ADMIN_PASSWORD": PASSWORD,
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"postgresql+psycopg2://postgres@localhost:5432/{self.database}",
            "AIRFLOW__CELERY__BROKER_URL": "redis://localhost:6379/7",
            "AIRFLOW__API__PORT": str(self.port),
            # A lost worker's task is noticed within seconds rather than the default 5 minutes.
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "20",
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
        }

    def launcher(self, *args: str) -> subprocess.CompletedProcess:
        result = subprocess.run([sys.executable, "-m", "oasis_ops.celery_local", *args], env=self.env, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stdout + result.stderr
        return result

    def python(self, code: str) -> None:
        subprocess.run([sys.executable, "-c", code], env=self.env, check=True, timeout=120)

    @property
    def url(self) -> str:
        return f"http://localhost:{self.port}"

    def token(self) -> str:
        return self.request("POST", "/auth/token", {"username": "admin", "password": PASSWORD}, token=None)["access_token"]

    def request(self, method: str, path: str, body: dict | None = None, token: str | None = "auto") -> dict:
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {self.token() if token == 'auto' else token}"
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read())

    def trigger(self, dag_id: str, run_id: str, conf: dict) -> None:
        self.request("POST", f"/api/v2/dags/{dag_id}/dagRuns", {"dag_run_id": run_id, "logical_date": None, "conf": conf})

    def state(self, dag_id: str, run_id: str) -> str:
        return self.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")["state"]

    def wait(self, dag_id: str, run_id: str, timeout: float = 900) -> str:
        deadline = time.monotonic() + timeout
        while (state := self.state(dag_id, run_id)) not in ("success", "failed"):
            assert time.monotonic() < deadline, f"{dag_id} {run_id} still {state}"
            time.sleep(3)
        return state

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        return self.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances?limit=1000")["task_instances"]

    def wait_for_running(self, dag_id: str, run_id: str, task_id: str, timeout: float = 600) -> None:
        deadline = time.monotonic() + timeout
        while not any(t["task_id"] == task_id and t["state"] == "running" for t in self.task_instances(dag_id, run_id)):
            assert time.monotonic() < deadline, f"no {task_id} of {run_id} ran"
            time.sleep(0.5)

    def worker_log(self, name: str) -> str:
        return (self.base / "airflow" / "celery" / "logs" / f"{name}.log").read_text()

    def pids(self) -> dict[str, int]:
        return json.loads((self.base / "airflow" / "celery" / "pids.json").read_text())


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    base = tmp_path_factory.mktemp("celery")
    stack = CeleryStack(base)
    piwind_workspace(base)  # the storage root and registry.yaml CeleryStack names
    (base / "airflow").mkdir()
    cfg = subprocess.run([BIN / "python", "-m", "oasis_ops.home", str(base / "airflow")], env=stack.env, check=True, capture_output=True, text=True)
    (base / "airflow" / "airflow.cfg").write_text(cfg.stdout)
    subprocess.run(["redis-cli", "-n", "7", "flushdb"], check=True, capture_output=True)
    stack.launcher("up")
    yield stack
    stack.launcher("down")
    stack.python(
        "from sqlalchemy import create_engine, text\n"
        "e = create_engine('postgresql+psycopg2://postgres@localhost:5432/postgres', isolation_level='AUTOCOMMIT')\n"
        f"e.connect().execute(text('DROP DATABASE IF EXISTS \"{stack.database}\" WITH (FORCE)'))"
    )


def control_set(analysis_id: str, **extra) -> dict:
    settings, files = CASES["control_set"]
    return {**files, "analysis_settings": piwind_settings(settings), "analysis_id": analysis_id, **extra}


def test_a_trigger_without_a_token_is_refused(stack):
    with pytest.raises(urllib.error.HTTPError) as refused:
        stack.request("POST", f"/api/v2/dags/{V1}/dagRuns", {"logical_date": None, "conf": {}}, token=None)
    assert refused.value.code == 401


def test_v1_and_v2_over_rest_match_expected_on_their_queues_and_workers(stack):
    stack.trigger(V1, "cs-v1", control_set("cs-v1"))
    stack.trigger(V2, "cs-v2", control_set("cs-v2", chunking={"fixed_lookup_chunks": 3, "fixed_analysis_chunks": 4}))
    assert stack.wait(V1, "cs-v1") == "success" and stack.wait(V2, "cs-v2") == "success"
    analyses = stack.storage / "analyses"
    assert_outputs_match(PIWIND / "expected" / "control_set", analyses / "cs-v2" / "output")
    assert_same_files(analyses / "cs-v1" / "output", analyses / "cs-v2" / "output")
    # Each task ran on its model's queue, and on the worker serving that queue.
    workers = {V1_QUEUE: "worker-oasislmf-piwind-1", V2_QUEUE: "worker-oasislmf-piwind-1-v2"}
    for dag_id, run_id, queue in ((V1, "cs-v1", V1_QUEUE), (V2, "cs-v2", V2_QUEUE)):
        ran = [t for t in stack.task_instances(dag_id, run_id) if t["state"] == "success"]
        assert ran and {t["queue"] for t in ran} == {queue}
        for task in ran:
            where = f"dag_id={dag_id}/run_id={run_id}/task_id={task['task_id']}/"
            assert where in stack.worker_log(workers[queue])
            assert where not in stack.worker_log(workers[V1_QUEUE if queue == V2_QUEUE else V2_QUEUE])


def test_two_v1_runs_on_one_v1_worker_run_one_after_the_other(stack):
    generate = {"location_file": "exposure/SourceLocOEDPiWind10.csv", "action": "generate_inputs"}
    stack.trigger(V1, "seq-1", generate | {"analysis_id": "seq-1"})
    stack.trigger(V1, "seq-2", generate | {"analysis_id": "seq-2"})
    assert stack.wait(V1, "seq-1") == "success" and stack.wait(V1, "seq-2") == "success"
    (first,), (second,) = stack.task_instances(V1, "seq-1"), stack.task_instances(V1, "seq-2")
    earlier, later = sorted([first, second], key=lambda t: t["start_date"])
    assert earlier["end_date"] <= later["start_date"]


def test_priority_orders_runs_waiting_for_the_v1_worker(stack):
    generate = {"location_file": "exposure/SourceLocOEDPiWind10.csv", "action": "generate_inputs"}
    stack.trigger(V1, "prio-busy", control_set("prio-busy", priority=5))
    stack.wait_for_running(V1, "prio-busy", "run_analysis")
    # The v1 worker is busy; three runs wait (its pool has one slot), the lowest priority first.
    waiting = [("prio-low", 2), ("prio-mid", 6), ("prio-top", 9)]
    for run_id, priority in waiting:
        stack.trigger(V1, run_id, generate | {"analysis_id": run_id, "priority": priority})
    for run_id in ("prio-busy", *(r for r, _ in waiting)):
        assert stack.wait(V1, run_id) == "success"
    starts = {run_id: stack.task_instances(V1, run_id)[0]["start_date"] for run_id, _ in waiting}
    assert starts["prio-top"] < starts["prio-mid"] < starts["prio-low"]


def test_a_worker_killed_mid_chunk_and_a_scheduler_restart_do_not_lose_the_run(stack):
    # A second v2 worker (as `--scale` would add), then SIGKILL the first in the middle of a loss chunk.
    stack.python(
        "from oasis_ops.celery_local import start_service\nfrom oasis_ops.stack import Service\n"
        f"start_service(Service('worker-extra-v2', ('celery', 'worker', '--queues', '{V2_QUEUE}', '--concurrency', '2'), '{V2_QUEUE}', 2))"
    )
    stack.trigger(V2, "killed", control_set("killed", chunking={"fixed_analysis_chunks": 6}))
    stack.wait_for_running(V2, "killed", "loss_chunk")
    running = [t["map_index"] for t in stack.task_instances(V2, "killed") if t["task_id"] == "loss_chunk" and t["state"] == "running"]
    where = f"run_id=killed/task_id=loss_chunk/map_index={running[0]}/attempt=1"
    (victim,) = [name for name in ("worker-oasislmf-piwind-1-v2", "worker-extra-v2") if where in stack.worker_log(name)]
    os.killpg(stack.pids()[victim], signal.SIGKILL)
    stack.launcher("restart", "scheduler")
    assert stack.wait(V2, "killed") == "success"
    tries = {t["map_index"]: t["try_number"] for t in stack.task_instances(V2, "killed") if t["task_id"] == "loss_chunk"}
    assert tries[running[0]] >= 2, "the chunk lost with its worker was retried on a live one"
    analyses = stack.storage / "analyses"
    if (analyses / "cs-v1" / "output").is_dir():
        assert_same_files(analyses / "cs-v1" / "output", analyses / "killed" / "output")
    assert_outputs_match(PIWIND / "expected" / "control_set", analyses / "killed" / "output")
