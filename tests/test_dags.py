"""The DAG file parses into a v1 and a v2 DAG per registered model, cheaply, with broken entries reported."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from harness.airflow_home import REPO
from harness.registry import write_registry
from oasis_ops.constants import TaskKind

#: Parses ``dags/`` as Airflow's dag-processor does, in a fresh interpreter (so that what parsing
#: imports shows), and prints what the tests check as JSON.
PARSE = """
import json, sys
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1])
dag = bag.dags.get("oasislmf_piwind_1_v1")
v2 = bag.dags.get("oasislmf_piwind_1_v2")
print(json.dumps({
    "v2_tasks": v2 and {t.task_id: [t.queue, t.retries, getattr(t, "map_index_template", None)] for t in v2.tasks},
    "v2_max_active_tasks": v2 and v2.max_active_tasks,
    "executors": {d.dag_id: sorted({str(t.executor) for t in d.tasks}) for d in bag.dags.values()},
    "images": sorted({t.executor_config["pod_override"].spec.containers[0].image for d in bag.dags.values() for t in d.tasks if t.executor_config}),
    "timeouts": {d.dag_id: {t.task_id: t.execution_timeout and t.execution_timeout.total_seconds() for t in d.tasks} for d in bag.dags.values()},
    "v2_params": v2 and sorted(v2.params),
    "dags": sorted(bag.dags),
    "errors": bag.import_errors,
    "queue": dag and [t.queue for t in dag.tasks],
    "params": dag and sorted(dag.params),
    "retries": dag and [t.retries for t in dag.tasks],
    "heavy": sorted(m for m in ("oasislmf", "numba", "ods_tools", "pandas") if m in sys.modules),
}))
"""
#: The storage hygiene DAG (``dags/oasis_storage_hygiene.py``) parses beside the models' DAGs.
HYGIENE_DAG = "oasis_storage_hygiene"
PIWIND_DAGS = [HYGIENE_DAG, "oasislmf_piwind_1_v1", "oasislmf_piwind_1_v2"]


def parse_dags(tmp_path: Path, *entries: dict, **extra_env: str) -> dict:
    registry = write_registry(tmp_path / "registry.yaml", *entries)
    env = {"OASIS_MODEL_REGISTRY": str(registry), "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "AIRFLOW_HOME": str(tmp_path / "home"),
           "PYTHONPATH": str(REPO / "plugins"), "PATH": "/usr/bin:/bin", **extra_env}
    out = subprocess.run([sys.executable, "-c", PARSE, str(REPO / "dags")], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_one_v1_dag_per_model_and_broken_entries_as_import_error(tmp_path, piwind_entry):
    parsed = parse_dags(
        tmp_path,
        piwind_entry,
        {"supplier_id": "Acme", "model_id": "Gone", "version_id": "3", "path": str(tmp_path / "missing")},
    )
    # The broken entry's placeholder never registers: only the good model's DAGs do.
    assert parsed["dags"] == PIWIND_DAGS
    assert parsed["queue"] == ["OasisLMF-PiWind-1"]
    assert parsed["retries"] == [2]
    assert parsed["params"] == sorted(
        ["location_file", "accounts_file", "ri_info_file", "ri_scope_file", "analysis_settings", "analysis_id", "priority", "chunking", "action"]
    )
    assert parsed["v2_params"] == parsed["params"]
    queue = "OasisLMF-PiWind-1-v2"
    assert parsed["v2_tasks"] == {
        "prepare": [queue, 2, None],
        "lookup_chunk": [queue, 2, "keys chunk {{ chunk_label }}"],
        "write_input_files": [queue, 2, None],
        "loss_chunk": [queue, 2, "loss chunk {{ chunk_label }}"],
        "plan_outputs": [queue, 2, None],
        "output_part": [queue, 2, "outputs {{ part_label }}"],
        "aggregate": [queue, 2, None],
    }
    # Airflow's default of 16 running tasks per DAG would cap the chunks.
    assert parsed["v2_max_active_tasks"] == 1024
    # Airflow records the error the registry-errors timetable raises as the DAG file's import error.
    (message,) = parsed["errors"].values()
    assert message == (
        f"AirflowTimetableInvalid: Model registry {tmp_path / 'registry.yaml'}: 1 broken entry\n"
        f"- {tmp_path / 'registry.yaml'} models[1] (Acme/Gone/3): path '{tmp_path / 'missing'}' is not a folder "
        f"(resolved to {tmp_path / 'missing'})"
    )
    # Parsing must not pull in the modelling stack: that happens only inside tasks.
    assert parsed["heavy"] == []


def test_a_clean_registry_has_no_import_errors(tmp_path, piwind_entry):
    parsed = parse_dags(tmp_path, piwind_entry)
    assert parsed["errors"] == {} and parsed["dags"] == PIWIND_DAGS


def test_every_task_has_its_kinds_execution_timeout_unless_the_model_overrides_it(tmp_path, piwind_entry):
    """A stuck task must fail (and free its worker and pool slot): every task of both DAGs carries an
    execution timeout, the default of its kind, or the model's ``execution_timeout_minutes``."""
    slow = piwind_entry | {"model_id": "Slow", "execution_timeout_minutes": {"run_analysis": 1440, "loss_chunk": 600, "plan_outputs": 5}}
    parsed = parse_dags(tmp_path, piwind_entry, slow)
    assert parsed["errors"] == {}
    default = {kind.value: kind.default_timeout.total_seconds() for kind in TaskKind}
    v1, v2 = {"run_analysis"}, set(default) - {"run_analysis"}
    timeouts = parsed["timeouts"]
    assert timeouts["oasislmf_piwind_1_v1"] == {kind: default[kind] for kind in v1}
    assert timeouts["oasislmf_piwind_1_v2"] == {kind: default[kind] for kind in v2}
    overridden = {"run_analysis": timedelta(days=1), "loss_chunk": timedelta(hours=10), "plan_outputs": timedelta(minutes=5)}
    slow_timeouts = default | {kind: value.total_seconds() for kind, value in overridden.items()}
    assert timeouts["oasislmf_slow_1_v1"] == {kind: slow_timeouts[kind] for kind in v1}
    assert timeouts["oasislmf_slow_1_v2"] == {kind: slow_timeouts[kind] for kind in v2}
    # The defaults themselves: the README's promise that a stuck task is stopped, not a missing value.
    assert all(seconds and seconds > 0 for seconds in default.values())


def test_a_model_on_the_kubernetes_executor_runs_its_tasks_as_pods_of_its_worker_image(tmp_path, piwind_entry):
    k8s = piwind_entry | {"model_id": "OnK8s", "executor": "KubernetesExecutor", "worker_image": "registry.example/oasis-worker:7"}
    # Not an executor this Airflow runs: a registry error for that model; the others load.
    parsed = parse_dags(tmp_path, piwind_entry, k8s)
    assert parsed["dags"] == PIWIND_DAGS
    (message,) = parsed["errors"].values()
    assert message == (
        f"AirflowTimetableInvalid: Model registry {tmp_path / 'registry.yaml'}: 1 broken entry\n"
        "- OasisLMF/OnK8s/1: executor 'KubernetesExecutor' is not in [core] executor (LocalExecutor); add it there"
    )
    # With Airflow running both executors (Airflow 3 runs several at once), its tasks go to Kubernetes.
    parsed = parse_dags(tmp_path, piwind_entry, k8s, AIRFLOW__CORE__EXECUTOR="CeleryExecutor,KubernetesExecutor")
    assert parsed["errors"] == {}
    assert parsed["executors"]["oasislmf_onk8s_1_v2"] == ["KubernetesExecutor"]
    assert parsed["executors"]["oasislmf_piwind_1_v2"] == ["None"]
    assert parsed["images"] == ["registry.example/oasis-worker:7"]


def test_models_differing_only_in_punctuation_get_their_own_dags(tmp_path, piwind_entry):
    parsed = parse_dags(tmp_path, piwind_entry | {"model_id": "Pi-Wind"}, piwind_entry | {"model_id": "Pi--Wind"})
    assert parsed["errors"] == {}
    assert parsed["dags"] == [HYGIENE_DAG, "oasislmf_pi__wind_1_v1", "oasislmf_pi__wind_1_v2", "oasislmf_pi_wind_1_v1", "oasislmf_pi_wind_1_v2"]
