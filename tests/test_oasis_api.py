"""The Oasis Platform API under ``/oasis`` on the embedded stack, started with ``make ui`` as a user
does, driven by oasislmf's own client (``oasislmf api run|list|get|cancel|reconnect|delete``) and by
plain HTTP where the client has no command: PiWind's control set through v1, v2 (chunked) and a
parquet upload, cancelling in the middle of the loss chunks, refused uploads, 401/403 on every route
family, and an api-server that dies in the middle of a run."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import psutil
import pytest

from harness.airflow_home import output_tail
from harness.embedded_stack import EmbeddedStack, wait_for_exit
from harness.oasis_client import (
    RESOURCES,
    ClientRun,
    Oasis,
    api_run,
    client_command,
    client_env,
    exposure_args,
    login_file,
    oasislmf,
)
from harness.outputs import assert_outputs_match, assert_same_files
from harness.piwind import CASES, PIWIND, V1_DAG, V2_DAG, piwind_workspace
from harness.polling import poll_until

pytestmark = pytest.mark.stack

PASSWORD = "oasis-api-test"
CASE = CASES["control_set"]
SETTINGS = PIWIND / "analysis_settings" / CASE.settings_file
#: The processes of a loss pipeline (and the scripts that run it), by program name.
PIPELINE = frozenset(
    {"evepy", "eve", "gulmc", "gulpy", "gulcalc", "fmpy", "fmcalc", "summarypy", "summarycalc", "eltpy", "pltpy", "aalpy",
     "lecpy", "katpy", "oasis_exec_monitor.sh"}
)


# --- the stack and its clients ---


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, piwind_root: Path):
    """``make ui`` serving PiWind, on a storage root holding copies of PiWind's exposure files."""
    base = tmp_path_factory.mktemp("oasis_api")
    storage, registry = piwind_workspace(base)
    embedded = EmbeddedStack(base, registry, storage, PASSWORD)
    embedded.start([V1_DAG, V2_DAG])
    yield embedded
    embedded.stop()


@pytest.fixture(scope="module")
def oasis(stack: EmbeddedStack) -> Oasis:
    """The Oasis API as ``admin``, logged in through its own ``access_token/``."""
    return Oasis.login(stack.oasis_url, "admin", PASSWORD)


@pytest.fixture(scope="module")
def model_id(oasis: Oasis) -> int:
    return oasis.model_id("OasisLMF", "PiWind", "1")


@pytest.fixture(scope="module")
def login(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return login_file(tmp_path_factory.mktemp("login"), "admin", PASSWORD)


def dag_runs(stack: EmbeddedStack, dag_id: str, aid: int, action: str | None = None) -> list[dict[str, Any]]:
    """The DAG runs of an analysis (its run parameter ``analysis_id`` is ``oasis-api-<id>``), oldest first."""
    runs = [
        run for run in stack.rest.dag_runs(dag_id)
        if run["conf"].get("analysis_id") == f"oasis-api-{aid}" and action in (None, run["conf"].get("action"))
    ]
    return sorted(runs, key=lambda run: run["run_after"])


def pipeline_processes(stack: EmbeddedStack) -> list[str]:
    """The stack's loss-pipeline processes still alive."""
    found = []
    for process in stack.processes():
        try:
            command = process.cmdline()
        except psutil.Error:
            continue
        if {Path(part).name for part in command[:2]} & PIPELINE or any(part.endswith(".run_analysis.sh") for part in command[:2]):
            found.append(f"{process.pid} {' '.join(command)[:120]}")
    return found


# --- oasislmf api run: v1, v2, parquet ---


@pytest.fixture(scope="module")
def v1_run(stack, login, model_id, tmp_path_factory) -> ClientRun:
    return api_run(stack, login, tmp_path_factory.mktemp("v1"), "v1", model_id, CASE.files, SETTINGS)


@pytest.fixture(scope="module")
def v2_run(stack, login, model_id, tmp_path_factory) -> ClientRun:
    return api_run(stack, login, tmp_path_factory.mktemp("v2"), "v2", model_id, CASE.files, SETTINGS, "--lookup-chunks", "2", "--analysis-chunks", "3")


def test_api_run_v1_gives_piwind_expected_outputs(v1_run):
    compared = assert_outputs_match(CASE.expected, v1_run.output)
    assert len(compared) == len(list(CASE.expected.glob("*.csv")))


def test_api_run_v2_gives_piwind_expected_outputs_in_the_chunks_asked(stack, oasis, v2_run):
    assert_outputs_match(CASE.expected, v2_run.output)
    generate, run = dag_runs(stack, V2_DAG, v2_run.analysis_id)
    assert (generate["conf"]["action"], run["conf"]["action"]) == ("generate_inputs", "run")
    assert generate["conf"]["chunking"]["fixed_lookup_chunks"] == 2 and run["conf"]["chunking"]["fixed_analysis_chunks"] == 3

    def chunks(dag_run: dict[str, Any], task_id: str) -> list[int]:
        return sorted(ti["map_index"] for ti in stack.rest.task_instances(V2_DAG, dag_run["dag_run_id"]) if ti["task_id"] == task_id and ti["map_index"] >= 0)

    assert chunks(generate, "lookup_chunk") == [0, 1]
    assert chunks(run, "loss_chunk") == [0, 1, 2]
    analysis = oasis.ok("GET", f"v2/analyses/{v2_run.analysis_id}/")
    assert (analysis["status"], analysis["analysis_chunks"]) == ("RUN_COMPLETED", 3)


def test_v1_and_v2_outputs_are_byte_identical(v1_run, v2_run):
    assert_same_files(v1_run.output, v2_run.output)


def test_parquet_location_file_gives_the_csv_outputs(stack, login, model_id, v1_run, tmp_path):
    import pandas as pd

    parquet = tmp_path / "SourceLocOEDPiWind10.parquet"
    pd.read_csv(stack.storage / CASE.files["location_file"]).to_parquet(parquet, index=False)
    run = api_run(stack, login, tmp_path / "run", "v1", model_id, dict(CASE.files) | {"location_file": parquet}, SETTINGS)
    assert_same_files(v1_run.output, run.output)


# --- list, get, delete ---


def test_list_get_and_delete(stack, login, oasis, v1_run, tmp_path):
    aid = v1_run.analysis_id
    analysis = oasis.ok("GET", f"v1/analyses/{aid}/")
    listed = oasislmf(stack, login, "list", "--server-version", "v2", cwd=tmp_path)
    assert listed.returncode == 0, output_tail(listed)
    row = re.search(rf"^\|\s+{aid} \| {re.escape(analysis['name'])} .*\| RUN_COMPLETED \|", listed.stderr + listed.stdout, re.M)
    assert row, output_tail(listed)

    got = oasislmf(
        stack, login, "get", "--server-version", "v1", "-o", str(tmp_path), "--analyses-output-file", str(aid),
        "--analyses-settings-file", str(aid), "--portfolio-location-file", str(analysis["portfolio"]), cwd=tmp_path,
    )
    assert got.returncode == 0, output_tail(got)
    with tarfile.open(tmp_path / f"{aid}_analyses_output_file.gz") as tar:
        tar.extractall(tmp_path / "output_file", filter="data")
    assert_same_files(v1_run.output, tmp_path / "output_file" / "output")
    settings = json.loads((tmp_path / f"{aid}_analyses_settings_file.json").read_text())
    assert settings.items() >= json.loads(SETTINGS.read_text()).items()
    uploaded = (stack.storage / CASE.files["location_file"]).read_bytes()
    assert (tmp_path / f"{analysis['portfolio']}_portfolios_location_file.csv").read_bytes() == uploaded

    deleted = oasislmf(stack, login, "delete", "--server-version", "v1", "-a", str(aid), cwd=tmp_path)
    assert deleted.returncode == 0, output_tail(deleted)
    assert "error" not in (deleted.stderr + deleted.stdout).lower(), output_tail(deleted)
    assert oasis.call("GET", f"v1/analyses/{aid}/").status_code == 404
    assert oasis.call("GET", f"v2/analyses/{aid}/output_file/").status_code == 404
    assert not (stack.storage / "analyses" / f"oasis-api-{aid}").exists()
    assert aid not in [a["id"] for a in oasis.ok("GET", "v2/analyses/")]


# --- cancel ---


def test_cancel_in_the_middle_of_the_loss_chunks(stack, login, oasis, model_id, tmp_path):
    known = {a["id"] for a in oasis.ok("GET", "v2/analyses/")}
    download = tmp_path / "download"
    download.mkdir()
    command = client_command(
        stack, login, "run", "--server-version", "v2", "--model-id", str(model_id), *exposure_args(stack, CASE.files),
        "-a", str(SETTINGS), "-o", str(download), "--analysis-chunks", "4",
    )
    with (tmp_path / "client.log").open("w") as log:
        client = subprocess.Popen(command, cwd=tmp_path, env=client_env(), stdout=log, stderr=subprocess.STDOUT)
    try:
        aid = poll_until(lambda: max({a["id"] for a in oasis.ok("GET", "v2/analyses/")} - known, default=None), 120, "no analysis created")

        def chunk_running() -> dict[str, Any] | None:
            for run in dag_runs(stack, V2_DAG, aid, "run"):
                tis = stack.rest.task_instances(V2_DAG, run["dag_run_id"])
                if any(ti["task_id"] == "loss_chunk" and ti["state"] == "running" for ti in tis):
                    return run
            return None

        run = poll_until(chunk_running, 600, f"no loss chunk of analysis {aid} running", 1)
        poll_until(lambda: pipeline_processes(stack), 120, "no loss pipeline started", 0.5)
        assert oasis.status("v2", aid) == "RUN_STARTED"

        cancelled = oasislmf(stack, login, "cancel", "--server-version", "v2", "--analysis-id", str(aid), cwd=tmp_path)
        assert cancelled.returncode == 0, output_tail(cancelled)
        analysis = oasis.ok("GET", f"v2/analyses/{aid}/")
        assert (analysis["status"], analysis["run_mode"], analysis["output_file"]) == ("RUN_CANCELLED", None, None)
        assert analysis["task_finished"] is not None
        # Its open sub-tasks are cancelled, not failed.
        counts = analysis["status_count"]
        assert (counts["TOTAL_IN_QUEUE"], counts["ERROR"], analysis["sub_task_error_ids"]) == (0, 0, []) and counts["CANCELLED"] > 0, counts
        assert stack.rest.run_state(V2_DAG, run["dag_run_id"]) == "failed"

        poll_until(lambda: not pipeline_processes(stack), 60, lambda: f"pipelines left: {pipeline_processes(stack)}", 0.5)
        # The client sees the cancellation and ends (without output to download).
        client.wait(timeout=120)
        assert "Analysis Run: Cancelled" in (tmp_path / "client.log").read_text()
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
    analysis_folder = stack.storage / "analyses" / f"oasis-api-{aid}"
    intermediate = stack.storage / ".intermediate" / f"oasis-api-{aid}"
    poll_until(lambda: not intermediate.exists(), 180, lambda: f"{intermediate} still holds {sorted(intermediate.rglob('*'))[:5]}")
    assert not (analysis_folder / "output").exists()
    assert oasis.status("v2", aid) == "RUN_CANCELLED"
    assert not pipeline_processes(stack)

    # Run it again: a new DAG run, the cancelled one stays failed.
    rerun = oasis.ok("POST", f"v2/analyses/{aid}/run/", json={})
    assert rerun["status"] in ("RUN_QUEUED", "RUN_STARTED")
    first, second = dag_runs(stack, V2_DAG, aid, "run")
    assert first["dag_run_id"] == run["dag_run_id"] and first["state"] == "failed"
    assert second["state"] in ("queued", "running", "success")
    oasis.wait_status("v2", aid, "RUN_COMPLETED")
    assert stack.rest.run_state(V2_DAG, second["dag_run_id"]) == "success"
    assert not intermediate.exists()
    assert_outputs_match(CASE.expected, analysis_folder / "output")


# --- refused uploads ---


@pytest.mark.parametrize(
    ("name", "content", "problem"),
    [
        ("not_oed.csv", b"Colour,Size\nred,2\nblue,3\n", "is not a valid OED location file"),
        ("empty.csv", b"", "is empty"),
        ("binary.csv", bytes(range(256)) * 8, "is a binary file"),
        ("locations.txt", None, "must be an OED .csv or .parquet file"),
    ],
    ids=["not-oed", "empty", "binary", "txt"],
)
def test_bad_upload_is_refused_naming_the_file_and_nothing_is_stored(stack, oasis, name, content, problem):
    content = (stack.storage / CASE.files["location_file"]).read_bytes() if content is None else content
    pid = oasis.ok("POST", "v2/portfolios/", json={"name": f"bad {name}"})["id"]
    answer = oasis.call("POST", f"v2/portfolios/{pid}/location_file/", files={"file": (name, content, "text/csv")})
    assert answer.status_code == 400, answer.text
    assert name in answer.text and problem in answer.text, answer.text
    assert oasis.ok("GET", f"v2/portfolios/{pid}/")["location_file"] is None
    assert oasis.call("GET", f"v2/portfolios/{pid}/location_file/").status_code == 404
    folder = stack.storage / "oasis-api" / "portfolios" / str(pid)
    assert not folder.exists() or not any(folder.rglob("*")), sorted(folder.rglob("*"))
    # The same portfolio takes a good file.
    good = (stack.storage / CASE.files["location_file"]).read_bytes()
    oasis.ok("POST", f"v2/portfolios/{pid}/location_file/", files={"file": ("SourceLocOEDPiWind10.csv", good, "text/csv")})
    assert oasis.ok("GET", f"v2/portfolios/{pid}/")["location_file"]["name"] == "SourceLocOEDPiWind10.csv"


# --- a failed run ---


def test_a_failed_run_serves_a_traceback_naming_the_task_and_the_problem(stack, oasis, model_id):
    import pandas as pd

    locations = pd.read_csv(stack.storage / CASE.files["location_file"])
    locations["Latitude"], locations["Longitude"] = 0.0, 0.0  # valid OED, but nowhere PiWind has a key for
    pid = oasis.ok("POST", "v2/portfolios/", json={"name": "no keys"})["id"]
    oasis.ok("POST", f"v2/portfolios/{pid}/location_file/", files={"file": ("nowhere.csv", locations.to_csv(index=False).encode(), "text/csv")})
    aid = oasis.ok("POST", "v2/analyses/", json={"name": "no keys", "portfolio": pid, "model": model_id, "complex_model_data_files": []})["id"]
    assert oasis.call("GET", f"v2/analyses/{aid}/input_generation_traceback_file/").status_code == 404
    assert oasis.ok("POST", f"v2/analyses/{aid}/generate_inputs/", json={})["status"] == "INPUTS_GENERATION_QUEUED"
    analysis = oasis.wait_status("v2", aid, "INPUTS_GENERATION_ERROR")
    assert analysis["input_generation_traceback_file"] == f"{stack.oasis_url}/v2/analyses/{aid}/input_generation_traceback_file/"
    assert analysis["sub_task_error_ids"] and analysis["status_count"]["ERROR"] > 0, analysis
    traceback = oasis.call("GET", f"v2/analyses/{aid}/input_generation_traceback_file/")
    assert traceback.status_code == 200 and traceback.headers["content-type"].startswith("text/plain"), traceback.text
    (generate,) = dag_runs(stack, V2_DAG, aid)
    failed = [ti for ti in stack.rest.task_instances(V2_DAG, generate["dag_run_id"]) if ti["state"] == "failed"]
    assert failed and generate["state"] == "failed"
    for ti in failed:
        chunk = f" (chunk {ti['map_index'] + 1})" if ti["map_index"] >= 0 else ""
        header = f"Task {ti['task_id']}{chunk}, try {ti['try_number']}, of DAG run {generate['dag_run_id']} ({V2_DAG}) failed:\n"
        assert header in traceback.text, traceback.text[:3000]
    print(f"\ninput_generation_traceback_file:\n{traceback.text[:1500]}")
    assert oasis.call("GET", f"v2/analyses/{aid}/run_traceback_file/").status_code == 404


# --- authentication and authorization ---


def test_no_token_is_401_and_a_viewer_is_refused_every_change(stack, oasis, model_id, v2_run):
    aid = v2_run.analysis_id
    pid = oasis.ok("GET", f"v2/analyses/{aid}/")["portfolio"]
    csv = ("SourceLocOEDPiWind10.csv", (stack.storage / CASE.files["location_file"]).read_bytes(), "text/csv")
    settings = json.loads(SETTINGS.read_text())
    reads = [
        ("GET", "models/"), ("GET", f"models/{model_id}/"), ("GET", f"models/{model_id}/settings/"),
        ("GET", "portfolios/"), ("GET", f"portfolios/{pid}/"), ("GET", f"portfolios/{pid}/location_file/"),
        ("GET", "analyses/"), ("GET", f"analyses/{aid}/"), ("GET", f"analyses/{aid}/settings/"), ("GET", f"analyses/{aid}/output_file/"),
    ]
    changes: list[tuple[str, str, dict[str, Any]]] = [
        ("POST", "portfolios/", {"json": {"name": "viewer's"}}),
        ("PUT", f"portfolios/{pid}/", {"json": {"name": "renamed"}}),
        ("POST", f"portfolios/{pid}/location_file/", {"files": {"file": csv}}),
        ("DELETE", f"portfolios/{pid}/location_file/", {}),
        ("DELETE", f"portfolios/{pid}/", {}),
        ("POST", "analyses/", {"json": {"name": "viewer's", "portfolio": pid, "model": model_id, "complex_model_data_files": []}}),
        ("POST", f"analyses/{aid}/settings/", {"json": settings}),
        ("POST", f"analyses/{aid}/generate_inputs/", {"json": {}}),
        ("POST", f"analyses/{aid}/run/", {"json": {}}),
        ("POST", f"analyses/{aid}/cancel/", {"json": {}}),
        ("DELETE", f"analyses/{aid}/", {}),
    ]
    anonymous, bad_token, viewer = Oasis(stack.oasis_url), Oasis(stack.oasis_url, "not-a-token"), Oasis(stack.oasis_url, stack.token("viewer", "viewer"))
    for version in ("v1", "v2"):
        for method, path, kwargs in [(m, p, {}) for m, p in reads] + changes:
            for who in (anonymous, bad_token):
                answer = who.call(method, f"{version}/{path}", **kwargs)
                assert answer.status_code == 401, f"{method} {version}/{path} without a valid token: {answer.status_code} {answer.text[:300]}"
            answer = viewer.call(method, f"{version}/{path}", **kwargs)
            wanted = 200 if (method, path) in reads else 403
            assert answer.status_code == wanted, f"{method} {version}/{path} as a viewer: {answer.status_code} {answer.text[:300]}"
    # Nothing the viewer tried changed anything.
    analysis = oasis.ok("GET", f"v2/analyses/{aid}/")
    assert (analysis["status"], analysis["portfolio"]) == ("RUN_COMPLETED", pid)
    assert oasis.ok("GET", f"v2/portfolios/{pid}/")["location_file"] is not None
    for path in ("healthcheck/", "server_info/"):
        assert anonymous.call("GET", path).status_code == 200, path


# --- the api-server dies in the middle of a run ---


def test_api_server_restart_in_the_middle_of_a_run(stack, login, oasis, model_id, tmp_path):
    pid = oasis.ok("POST", "v2/portfolios/", json={"name": "restart"})["id"]
    for param, path in CASE.files.items():
        content = (stack.storage / path).read_bytes()
        oasis.ok("POST", f"v2/portfolios/{pid}/{RESOURCES[param]}/", files={"file": (Path(path).name, content, "text/csv")})
    body = {"name": "restart", "portfolio": pid, "model": model_id, "complex_model_data_files": []}
    aid = oasis.ok("POST", "v2/analyses/", json=body)["id"]
    oasis.ok("POST", f"v2/analyses/{aid}/settings/", json=CASE.settings())
    oasis.ok("POST", f"v2/analyses/{aid}/chunking_configuration/", json={"loss_strategy": "FIXED_CHUNKS", "fixed_analysis_chunks": 2})
    assert oasis.ok("POST", f"v2/analyses/{aid}/generate_inputs/", json={})["status"] == "INPUTS_GENERATION_QUEUED"
    oasis.wait_status("v2", aid, "READY")
    assert oasis.ok("POST", f"v2/analyses/{aid}/run/", json={})["status"] == "RUN_QUEUED"
    (run,) = dag_runs(stack, V2_DAG, aid, "run")
    stack.rest.wait_for_task(V2_DAG, run["dag_run_id"], "running", task_id="loss_chunk")
    before = {kind: [item["id"] for item in oasis.ok("GET", f"v2/{kind}/")] for kind in ("models", "portfolios", "analyses")}

    api_server = stack.service("api-server")
    api_server.send_signal(signal.SIGTERM)
    wait_for_exit(api_server, 60)
    # The launcher stops the whole stack when one of its services exits, and make with it.
    assert not stack.wait_stopped(120), "the stack did not stop after its api-server exited"
    assert stack.make is not None and stack.make.returncode != 0
    assert "api-server exited; stopping the stack" in stack.last_log()

    stack.start([V1_DAG, V2_DAG])
    after = Oasis(stack.oasis_url, oasis.token)  # the token outlives the restart (same secret)
    assert {kind: [item["id"] for item in after.ok("GET", f"v2/{kind}/")] for kind in before} == before
    reconnected = oasislmf(stack, login, "reconnect", "--server-version", "v2", "--analysis-id", str(aid), "-o", str(tmp_path), cwd=tmp_path)
    assert reconnected.returncode == 0, output_tail(reconnected)
    assert after.status("v2", aid) == "RUN_COMPLETED"
    with tarfile.open(tmp_path / f"analysis_{aid}_output.tar.gz") as tar:
        tar.extractall(tmp_path / "extracted", filter="data")
    assert_outputs_match(CASE.expected, tmp_path / "extracted" / "output")
    # The scheduler did not lose the run: the same DAG run finished it.
    (finished,) = dag_runs(stack, V2_DAG, aid, "run")
    assert (finished["dag_run_id"], finished["state"]) == (run["dag_run_id"], "success")
