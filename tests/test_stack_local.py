"""The DAGs on a real scheduler (LocalExecutor, one task at a time): the run's priority orders the
waiting tasks across v1 and v2 runs, and clearing one failed loss chunk over the REST API, as the
UI does, resumes the run with outputs identical to v1."""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from airflow_cli import AirflowHome
from airflow_stack import AirflowStack
from conftest import PIWIND, piwind_settings, piwind_workspace
from outputs import assert_outputs_match, assert_same_files
from test_e2e_piwind import CASES

V1, V2 = "oasislmf_piwind_1_v1", "oasislmf_piwind_1_v2"
#: A scheduled analysis that runs whenever the portfolio's location file is updated (an asset event).
ON_NEW_PORTFOLIO = {
    "name": "on_new_portfolio",
    "asset": "exposure/SourceLocOEDPiWind10.csv",
    "params": {"location_file": "exposure/SourceLocOEDPiWind10.csv", "action": "generate_inputs", "analysis_id": "on-new-portfolio"},
}
ON_NEW_PORTFOLIO_DAG = "oasislmf_piwind_1_v1__on_new_portfolio"
PASSWORD = "stack-test"
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


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    base = tmp_path_factory.mktemp("stack")
    storage, registry = piwind_workspace(base, analyses=[ON_NEW_PORTFOLIO])
    dags = base / "dags"
    dags.mkdir()
    (dags / "oasis_models_flaky.py").write_text(FLAKY_DAGS)
    (base / "passwords.json").write_text(json.dumps({"admin": PASSWORD}))
    airflow = AirflowHome.create(base / "airflow", registry, storage)
    stack = AirflowStack(
        airflow,
        dags,
        {
            "OASIS_TEST_FAIL_MARKER": str(base / "fail-chunk-2"),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(base / "passwords.json"),
        },
    )
    stack.start([V1, V2, ON_NEW_PORTFOLIO_DAG])
    yield stack
    stack.stop()


def test_priority_orders_waiting_tasks_across_v1_and_v2_runs(stack):
    # PiWind runs one v1 worker (a pool of 1 slot) and its v2 worker runs 2 tasks at once.
    assert stack.query("SELECT pool, slots FROM slot_pool WHERE pool LIKE 'OasisLMF%' ORDER BY pool", ()) == [
        ("OasisLMF-PiWind-1", 1), ("OasisLMF-PiWind-1-v2", 2)
    ]
    generate = {"location_file": "exposure/SourceLocOEDPiWind10.csv", "action": "generate_inputs"}
    settings, files = CASES["case_1"]
    busy = {**files, "analysis_settings": piwind_settings(settings), "priority": 5, "chunking": {"fixed_analysis_chunks": 4}}
    stack_trigger(stack, V1, "busy-v1", busy | {"analysis_id": "prio-busy-v1"})
    stack_trigger(stack, V2, "busy-v2", busy | {"analysis_id": "prio-busy-v2"})
    stack.wait_for_task_state(V1, "busy-v1", "running")
    stack.wait_for_task_state(V2, "busy-v2", "running", task_id="loss_chunk")
    # While the workers are busy, runs wait; the lowest priority is triggered first.
    waiting = [(V1, "v1-low", 2), (V1, "v1-mid", 6), (V1, "v1-top", 9), (V2, "v2-low", 2), (V2, "v2-top", 9)]
    for dag_id, run_id, priority in waiting:
        stack_trigger(stack, dag_id, run_id, generate | {"analysis_id": f"prio-{run_id}", "priority": priority})
    for dag_id, run_id, _ in [(V1, "busy-v1", 5), (V2, "busy-v2", 5), *waiting]:
        assert stack.wait(dag_id, run_id) == "success", run_id

    first_start = {}
    for dag_id, run_id, priority in waiting:
        instances = stack.task_instances(dag_id, run_id)
        assert {ti[4] for ti in instances} == {priority}  # every task weighs its run's priority
        first_start[run_id] = min(ti[5] for ti in instances if ti[5] is not None)
    assert first_start["v1-top"] < first_start["v1-mid"] < first_start["v1-low"]
    assert first_start["v2-top"] < first_start["v2-low"]


def test_clearing_one_failed_chunk_resumes_the_run(stack):
    marker = Path(stack.extra_env["OASIS_TEST_FAIL_MARKER"])
    settings, files = CASES["case_1"]
    conf = {**files, "analysis_settings": piwind_settings(settings)}
    marker.touch()
    stack_trigger(stack, V2, "resume", conf | {"analysis_id": "resume-v2", "chunking": {"fixed_lookup_chunks": 2, "fixed_analysis_chunks": 3}})
    assert stack.wait(V2, "resume") == "failed"
    states = {(ti[0], ti[1]): ti[2] for ti in stack.task_instances(V2, "resume")}
    assert states[("loss_chunk", 1)] == "failed" and states[("loss_chunk", 0)] == states[("loss_chunk", 2)] == "success"
    assert states[("aggregate", -1)] == "upstream_failed" and states[("cleanup", -1)] == "success"
    intermediate = stack.airflow.storage / ".intermediate" / "resume-v2"
    assert any(intermediate.iterdir()), "a failed run keeps its intermediate files for a resume"
    assert not (stack.airflow.storage / "analyses" / "resume-v2" / "output").exists()

    marker.unlink()
    clear = {"dry_run": False, "dag_run_id": "resume", "task_ids": [["loss_chunk", 1]], "include_downstream": True, "only_failed": False}
    stack_api(stack, "POST", f"/api/v2/dags/{V2}/clearTaskInstances", clear)
    assert stack.wait(V2, "resume") == "success"
    tries = {(ti[0], ti[1]): ti[3] for ti in stack.task_instances(V2, "resume")}
    # Only the cleared chunk ran again, then what follows it (the aggregate had not run; the
    # cleanup runs a second time and now removes the intermediate files).
    assert tries[("loss_chunk", 1)] == 2 and tries[("aggregate", -1)] == 1 and tries[("cleanup", -1)] == 2
    assert tries[("loss_chunk", 0)] == tries[("loss_chunk", 2)] == tries[("prepare", -1)] == 1
    assert not intermediate.exists()

    stack_trigger(stack, V1, "resume-v1", conf | {"analysis_id": "resume-v1"})
    assert stack.wait(V1, "resume-v1") == "success"
    analyses = stack.airflow.storage / "analyses"
    assert_outputs_match(PIWIND / "expected" / "case_1", analyses / "resume-v2" / "output")
    assert_same_files(analyses / "resume-v1" / "output", analyses / "resume-v2" / "output")


def test_an_asset_event_on_the_portfolio_runs_its_scheduled_analysis(stack):
    uri = f"file://{stack.airflow.storage}/exposure/SourceLocOEDPiWind10.csv"
    deadline = time.monotonic() + 120
    while not (assets := stack_api(stack, "GET", f"/api/v2/assets?uri_pattern={urllib.parse.quote(uri)}")["assets"]):
        assert time.monotonic() < deadline, f"asset {uri} not registered"
        time.sleep(2)
    # What a portfolio upload (or a producer task with the asset as an outlet) records:
    stack_api(stack, "POST", "/api/v2/assets/events", {"asset_id": assets[0]["id"]})
    while not (runs := stack.query("SELECT run_id FROM dag_run WHERE dag_id = ?", (ON_NEW_PORTFOLIO_DAG,))):
        assert time.monotonic() < deadline + 120, "the asset event started no run"
        time.sleep(2)
    (run_id,) = runs[0]
    assert stack.wait(ON_NEW_PORTFOLIO_DAG, run_id) == "success"
    # It ran with its declared parameters: inputs only, under its analysis id.
    inputs = stack.airflow.storage / "analyses" / "on-new-portfolio" / "input"
    assert (inputs / "items.bin").is_file() and not (inputs.parent / "output").exists()


def stack_trigger(stack: AirflowStack, dag_id: str, run_id: str, conf: dict) -> None:
    """Trigger a run over the REST API (as the UI and API clients do): it is created at once."""
    stack_api(stack, "POST", f"/api/v2/dags/{dag_id}/dagRuns", {"dag_run_id": run_id, "logical_date": None, "conf": conf})


def stack_api(stack: AirflowStack, method: str, path: str, body: dict | None = None) -> dict:
    """Call the REST API with a JWT from /auth/token, as a client of the API does."""
    base = stack.api_url
    token_request = urllib.request.Request(
        f"{base}/auth/token", data=json.dumps({"username": "admin", "password": PASSWORD}).encode(),
        headers={"Content-Type": "application/json"}, method="POST",
    )
    with urllib.request.urlopen(token_request, timeout=30) as response:
        token = json.loads(response.read())["access_token"]
    request = urllib.request.Request(
        base + path, data=json.dumps(body).encode() if body is not None else None, method=method,
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())
