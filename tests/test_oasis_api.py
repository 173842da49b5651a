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
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests

from harness.airflow_home import BIN, clean_environ, output_tail
from harness.embedded_stack import EmbeddedStack, wait_for_exit
from harness.outputs import assert_outputs_match, assert_same_files
from harness.piwind import CASES, PIWIND, V1_DAG, V2_DAG, piwind_workspace
from harness.polling import poll_until

pytestmark = pytest.mark.stack

PASSWORD = "oasis-api-test"
CASE = CASES["control_set"]
SETTINGS = PIWIND / "analysis_settings" / CASE.settings_file
#: Run parameter of each exposure file -> the client's flag and the API's portfolio resource.
FLAGS = {"location_file": "-x", "accounts_file": "-y", "ri_info_file": "-i", "ri_scope_file": "-s"}
RESOURCES = {
    "location_file": "location_file",
    "accounts_file": "accounts_file",
    "ri_info_file": "reinsurance_info_file",
    "ri_scope_file": "reinsurance_scope_file",
}
#: The processes of a loss pipeline (and the scripts that run it), by program name.
PIPELINE = frozenset(
    {"evepy", "eve", "gulmc", "gulpy", "gulcalc", "fmpy", "fmcalc", "summarypy", "summarycalc", "eltpy", "pltpy", "aalpy",
     "lecpy", "katpy", "oasis_exec_monitor.sh"}
)
#: Longest one ``oasislmf api run`` may take (PiWind's 10 locations take one to three minutes).
CLIENT_TIMEOUT = 1200
#: Longest an analysis may take to reach a final status when the test waits for it without the client.
RUN_TIMEOUT = 900
STATUS = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) .*(File uploaded|Analysis Run: Complete)", re.M)


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


class Oasis:
    """The Oasis API as oasislmf's client calls it: JSON, and a Bearer token or (anonymous) an empty
    ``Authorization`` header."""

    def __init__(self, url: str, token: str | None = None) -> None:
        self.url, self.token = url, token

    def call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        headers = {"accept": "application/json", "authorization": f"Bearer {self.token}" if self.token else ""}
        return requests.request(method, f"{self.url}/{path}", headers=headers, timeout=60, **kwargs)

    def ok(self, method: str, path: str, **kwargs: Any) -> Any:
        """The JSON answer of a call that must succeed."""
        response = self.call(method, path, **kwargs)
        assert response.status_code < 300, f"{method} {path}: {response.status_code} {response.text[:2000]}"
        return response.json() if response.content else None

    def status(self, version: str, aid: int) -> str:
        return self.ok("GET", f"{version}/analyses/{aid}/")["status"]

    def wait_status(self, version: str, aid: int, wanted: str, timeout: float = RUN_TIMEOUT) -> dict[str, Any]:
        """The analysis once its status is ``wanted``; fails at once on another final status."""
        seen: dict[str, Any] = {}

        def reached() -> bool:
            seen.update(self.ok("GET", f"{version}/analyses/{aid}/"))
            final = {"RUN_COMPLETED", "RUN_ERROR", "RUN_CANCELLED", "READY", "INPUTS_GENERATION_ERROR", "INPUTS_GENERATION_CANCELLED"}
            assert seen["status"] == wanted or seen["status"] not in final, f"analysis {aid} ended {seen['status']}, not {wanted}"
            return seen["status"] == wanted

        poll_until(reached, timeout, lambda: f"analysis {aid} is still {seen.get('status')}, not {wanted}")
        return seen


@pytest.fixture(scope="module")
def oasis(stack: EmbeddedStack) -> Oasis:
    """The Oasis API as ``admin``, logged in through its own ``access_token/``."""
    answer = requests.post(f"{stack.oasis_url}/access_token/", json={"username": "admin", "password": PASSWORD}, timeout=60)
    assert answer.status_code == 200, answer.text
    return Oasis(stack.oasis_url, answer.json()["access_token"])


@pytest.fixture(scope="module")
def model_id(oasis: Oasis) -> int:
    """PiWind's id, as ``GET v2/models/`` lists it."""
    (piwind,) = [m for m in oasis.ok("GET", "v2/models/") if (m["supplier_id"], m["model_id"], m["version_id"]) == ("OasisLMF", "PiWind", "1")]
    return int(piwind["id"])


@pytest.fixture(scope="module")
def login(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("login") / "login.json"
    path.write_text(json.dumps({"username": "admin", "password": PASSWORD}))
    return path


def oasislmf(stack: EmbeddedStack, login: Path, command: str, *args: str, cwd: Path, timeout: float = CLIENT_TIMEOUT) -> subprocess.CompletedProcess:
    """``oasislmf api <command> <args>`` against the stack, as ``admin``."""
    common = ["--server-url", stack.oasis_url, "--server-login-json", str(login)]
    env = {k: v for k, v in clean_environ().items() if k != "AIRFLOW_HOME"}
    return subprocess.run(
        [str(BIN / "oasislmf"), "api", command, *common, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def exposure_args(stack: EmbeddedStack, files: Mapping[str, str | Path]) -> list[str]:
    """The client's exposure flags for ``files`` (run parameter -> storage path or file)."""
    return [arg for param, path in files.items() for arg in (FLAGS[param], str(stack.storage / path))]


@dataclass(frozen=True)
class ClientRun:
    """One ``oasislmf api run``: its analysis, its extracted ``output/``, how long it took."""

    analysis_id: int
    output: Path
    seconds: float
    #: From the first upload to the client seeing RUN_COMPLETED, by the client's own log.
    upload_to_completed: float


def api_run(stack: EmbeddedStack, login: Path, base: Path, version: str, model_id: int, files: Mapping[str, str | Path], *extra: str) -> ClientRun:
    """``oasislmf api run`` end to end; its downloaded ``analysis_<id>_output.tar.gz`` extracted."""
    download = base / "download"
    download.mkdir(parents=True)
    started = time.monotonic()
    result = oasislmf(
        stack, login, "run", "--server-version", version, "--model-id", str(model_id), *exposure_args(stack, files),
        "-a", str(SETTINGS), "-o", str(download), *extra, cwd=base,
    )
    seconds = time.monotonic() - started
    assert result.returncode == 0, output_tail(result)
    (archive,) = download.glob("analysis_*_output.tar.gz")
    with tarfile.open(archive) as tar:
        tar.extractall(base / "extracted", filter="data")
    stamps = {kind: datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f") for stamp, kind in reversed(STATUS.findall(result.stderr + result.stdout))}
    elapsed = (stamps["Analysis Run: Complete"] - stamps["File uploaded"]).total_seconds()
    print(f"\noasislmf api run {version} {' '.join(extra)}: {seconds:.0f} s in all, {elapsed:.0f} s from upload to RUN_COMPLETED")
    return ClientRun(int(archive.name.split("_")[1]), base / "extracted" / "output", seconds, elapsed)


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
    return api_run(stack, login, tmp_path_factory.mktemp("v1"), "v1", model_id, CASE.files)


@pytest.fixture(scope="module")
def v2_run(stack, login, model_id, tmp_path_factory) -> ClientRun:
    return api_run(stack, login, tmp_path_factory.mktemp("v2"), "v2", model_id, CASE.files, "--lookup-chunks", "2", "--analysis-chunks", "3")


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
    run = api_run(stack, login, tmp_path / "run", "v1", model_id, dict(CASE.files) | {"location_file": parquet})
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
    command = [
        str(BIN / "oasislmf"), "api", "run", "--server-url", stack.oasis_url, "--server-login-json", str(login),
        "--server-version", "v2", "--model-id", str(model_id), *exposure_args(stack, CASE.files), "-a", str(SETTINGS),
        "-o", str(download), "--analysis-chunks", "4",
    ]
    with (tmp_path / "client.log").open("w") as log:
        env = {k: v for k, v in clean_environ().items() if k != "AIRFLOW_HOME"}
        client = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
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
