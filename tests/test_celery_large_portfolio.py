"""A real-size portfolio on the Celery stack (PostgreSQL, Redis, ``make celery-up`` on a database that
does not exist yet): big enough that oasislmf's keys lookup starts its own process pool inside the
task, which Airflow forks from a Celery pool process. v1 and v2 (one keys chunk: the lookup's pool;
several: one lookup per chunk) finish with outputs identical to the LocalExecutor's; ``make celery-down`` stops every
process the stack started, and after ``make celery-up`` the task lost with its worker frees its slot."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import psutil
import pytest

from harness.airflow_home import REPO, AirflowHome
from harness.celery_stack import CeleryStack
from harness.outputs import assert_same_files
from harness.polling import poll_until
from harness.registry import write_registry

pytestmark = pytest.mark.stack

#: 20,000 locations: oasislmf's lookup splits them over a pool of (up to) every core; few events, so
#: that the losses stay quick.
SPEC = dict(locations=20000, events=200, samples=10, areaperils=1000, areaperils_per_event=100, vulnerabilities=20)
ENTRY = {"supplier_id": "OasisAirflow", "model_id": "Synthetic", "version_id": "1", "path": "model"}
V1, V2 = "oasisairflow_synthetic_1_v1", "oasisairflow_synthetic_1_v2"
V1_WORKER = "worker-oasisairflow-synthetic-1"
PASSWORD = "large-portfolio"
PIPELINE_TOOLS = ("evepy", "gulmc", "gulpy", "fmpy", "summarypy", "eltpy", "pltpy", "aalpy", "lecpy", "katpy")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> tuple[Path, Path, Path]:
    """(base, registry, storage): the synthetic model, and its portfolio in the storage root."""
    from oasis_ops.tools.synthetic import SyntheticModelSpec, build_synthetic_model

    base = tmp_path_factory.mktemp("large")
    model = build_synthetic_model(base / "model", SyntheticModelSpec(**SPEC))
    storage = base / "storage"
    shutil.copytree(model / "exposure", storage / "portfolio")
    return base, write_registry(base / "registry.yaml", ENTRY), storage


@pytest.fixture(scope="module")
def stack(workspace):
    base, registry, storage = workspace
    stack = CeleryStack(base / "celery", registry, storage, PASSWORD)
    stack.up()
    yield stack
    stack.down()


@pytest.fixture(scope="module")
def local_executor_output(workspace) -> Path:
    """The same v1 analysis through ``airflow dags test`` on the embedded default (LocalExecutor)."""
    base, registry, storage = workspace
    AirflowHome.create(base / "local", registry, storage).dags_test_ok(V1, conf(workspace, "local-v1"))
    return storage / "analyses" / "local-v1" / "output"


def conf(workspace, analysis_id: str, **extra) -> dict:
    base = workspace[0]
    settings = json.loads((base / "model" / "analysis_settings.json").read_text())
    files = {"location_file": "portfolio/location.csv", "accounts_file": "portfolio/account.csv"}
    return files | {"analysis_settings": settings, "analysis_id": analysis_id} | extra


def run(stack: CeleryStack, workspace, dag_id: str, analysis_id: str, **extra) -> Path:
    stack.rest.trigger(dag_id, analysis_id, conf(workspace, analysis_id, **extra))
    assert stack.rest.wait(dag_id, analysis_id, timeout=900) == "success", stack.rest.task_instances(dag_id, analysis_id)
    return stack.storage / "analyses" / analysis_id / "output"


def test_v1_finishes_with_the_local_executors_outputs(stack, workspace, local_executor_output):
    assert_same_files(local_executor_output, run(stack, workspace, V1, "celery-v1"))
    (task,) = stack.rest.task_instances(V1, "celery-v1")
    assert task["try_number"] == 1


@pytest.mark.parametrize("lookup_chunks", [1, 3])
def test_v2_finishes_with_the_local_executors_outputs(stack, workspace, local_executor_output, lookup_chunks):
    analysis_id = f"celery-v2-{lookup_chunks}"
    chunking = {"fixed_lookup_chunks": lookup_chunks, "fixed_analysis_chunks": 2}
    assert_same_files(local_executor_output, run(stack, workspace, V2, analysis_id, chunking=chunking))
    lookups = [t for t in stack.rest.task_instances(V2, analysis_id) if t["task_id"] == "lookup_chunk"]
    assert len(lookups) == lookup_chunks and {t["try_number"] for t in lookups} == {1}


def pipeline_processes(root_pid: int, tools: tuple[str, ...] = PIPELINE_TOOLS) -> list[psutil.Process]:
    """The loss pipeline processes (running ``tools``) below a service's process."""
    found = []
    for process in psutil.Process(root_pid).children(recursive=True):
        try:
            if any(tool in " ".join(process.cmdline()[:2]) for tool in tools):
                found.append(process)
        except psutil.Error:
            continue
    return found


def test_celery_down_stops_everything_and_a_task_lost_with_its_worker_frees_its_slot(stack, workspace):
    stack.rest.trigger(V1, "lost", conf(workspace, "lost"))
    poll_until(lambda: pipeline_processes(stack.pids()[V1_WORKER]), 300, "no pipeline of the v1 run started", 0.2)
    started = {pid: psutil.Process(pid) for pid in stack.pids().values()}
    tree = [p for root in started.values() for p in [root, *root.children(recursive=True)]]
    subprocess.run(["make", "celery-down", f"AIRFLOW_HOME={stack.home}"], cwd=REPO, env=stack.env, check=True, timeout=300)
    left = [p for p in tree if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert not left, f"still running after make celery-down: {[(p.pid, p.name()) for p in left]}"

    # The database kept the task 'running' with its only v1 pool slot; the restarted stack's scheduler
    # adopts it, fails it for its missing heartbeats, and retries it: the slot is free again.
    subprocess.run(["make", "celery-up", f"AIRFLOW_HOME={stack.home}"], cwd=REPO, env=stack.env, check=True, timeout=600)
    stack.rest.trigger(V1, "after-restart", conf(workspace, "after-restart", action="generate_inputs"))
    assert stack.rest.wait(V1, "after-restart", timeout=600) == "success"
    assert stack.rest.wait(V1, "lost", timeout=600) == "success"
    (lost,) = stack.rest.task_instances(V1, "lost")
    assert lost["try_number"] >= 2
