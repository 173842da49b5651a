"""The DAG file parses into one v1 DAG per registered model, cheaply, with broken entries reported."""

from __future__ import annotations

import json
import subprocess
import sys

from airflow_cli import REPO
from conftest import write_registry

PARSE = """
import json, sys
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1])
dag = bag.dags.get("oasislmf_piwind_1_v1")
print(json.dumps({
    "dags": sorted(bag.dags),
    "errors": bag.import_errors,
    "queue": dag and [t.queue for t in dag.tasks],
    "params": dag and sorted(dag.params),
    "retries": dag and [t.retries for t in dag.tasks],
    "heavy": sorted(m for m in ("oasislmf", "numba", "ods_tools", "pandas") if m in sys.modules),
}))
"""


def parse_dags(tmp_path, *entries: dict) -> dict:
    registry = write_registry(tmp_path / "registry.yaml", *entries)
    env = {"OASIS_MODEL_REGISTRY": str(registry), "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "AIRFLOW_HOME": str(tmp_path / "home"),
           "PYTHONPATH": str(REPO / "plugins"), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", PARSE, str(REPO / "dags")], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_one_v1_dag_per_model_and_broken_entries_as_import_error(tmp_path, piwind_entry):
    parsed = parse_dags(
        tmp_path,
        piwind_entry,
        {"supplier_id": "Acme", "model_id": "Gone", "version_id": "3", "path": str(tmp_path / "missing")},
    )
    # The broken entry's placeholder never registers: only the good model's DAG does.
    assert parsed["dags"] == ["oasislmf_piwind_1_v1"]
    assert parsed["queue"] == ["OasisLMF-PiWind-1"]
    assert parsed["retries"] == [2]
    assert parsed["params"] == sorted(
        ["location_file", "accounts_file", "ri_info_file", "ri_scope_file", "analysis_settings", "analysis_id", "priority", "chunking", "action"]
    )
    (message,) = parsed["errors"].values()
    assert "Acme/Gone/3" in message and "is not a folder" in message
    # Parsing must not pull in the modelling stack: that happens only inside tasks.
    assert parsed["heavy"] == []


def test_a_clean_registry_has_no_import_errors(tmp_path, piwind_entry):
    parsed = parse_dags(tmp_path, piwind_entry)
    assert parsed["errors"] == {} and parsed["dags"] == ["oasislmf_piwind_1_v1"]
