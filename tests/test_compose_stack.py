"""The committed ``docker-compose.yaml`` started for real, from the model worker image built here
(``worker_image/Dockerfile`` on a Debian bookworm base made from Debian's packages: Docker Hub cannot
be reached), with a ``.env`` made from ``.env.example`` and a models folder holding a copy of PiWind.

The committed file is rendered for the default registry, whose workers serve its model's queues; so the
models folder registers PiWind's data under the default registry's model ids (supplier, model, version),
and everything else is PiWind's own: its lookup, its RI case, its expected outputs.

The runs are few and each checks several things (a PiWind analysis costs a minute or two here): two v1
runs over REST (the first on fresh containers, then a warm one: timed), a v2 run over REST on two v2
workers during which one worker is killed in the middle of a loss chunk and the scheduler restarted, v1
and v2 through oasislmf's own client, then the stack taken down and up again (with the other Compose
implementation when there is one) and the earlier analyses read back."""

from __future__ import annotations

import json
import shutil
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.airflow_home import REPO
from harness.compose_stack import ComposeStack, Container, env_file, generated_secrets, new_project
from harness.docker import Engine, Images, compose_v1, compose_v2, image_size, log, required_images, run
from harness.oasis_client import ClientRun, Oasis, api_run, login_file
from harness.outputs import assert_outputs_match, assert_same_files
from harness.piwind import CASES, PIWIND
from harness.polling import poll_until
from harness.registry import write_registry
from oasis_ops.constants import Mode
from oasis_ops.deploy.pools import model_pools
from oasis_ops.deploy.stack import worker
from oasis_ops.registry import Model, load_registry

pytestmark = pytest.mark.stack

CASE = CASES["control_set"]
SETTINGS = PIWIND / "analysis_settings" / CASE.settings_file
#: v2 workers the test scales to; the model's scaling makes its pools that large too.
V2_WORKERS = 2
#: A killed worker's task is failed and retried after this many seconds without heartbeats (default 300).
HEARTBEAT_TIMEOUT = 60
V2_CHUNKING = {"fixed_lookup_chunks": 2, "fixed_analysis_chunks": 6}
RUN_TIMEOUT = 900
#: Airflow's [scheduler] task_queued_timeout: a chunk the killed worker had received but not started stays
#: queued that long (its Celery message is unacknowledged until Redis' visibility timeout) before it is sent again.
QUEUED_TIMEOUT = 600
#: Where the image keeps oasislmf's numba kernels, compiled when it was built (worker_image/Dockerfile).
NUMBA_CACHE = "/opt/oasis/numba"


# --- the stack ---


def default_identity() -> dict[str, str]:
    """Supplier, model and version of the default registry's model: the committed file's workers serve it."""
    (entry,) = yaml.safe_load((REPO / "models" / "registry.yaml").read_text())["models"]
    return {key: str(entry[key]) for key in ("supplier_id", "model_id", "version_id")}


def models_folder(base: Path) -> Path:
    """``OASIS_MODELS_DIR``: a copy of PiWind under the default registry's ids, scaled to :data:`V2_WORKERS`
    fixed workers (its pools follow), its folders 755 and files 644 as ``.env.example`` asks (PiWind's are
    read-only here: oasislmf copies some model files twice, keeping their mode, which a non-root worker
    cannot do with a read-only one)."""
    models = base / "models"
    shutil.copytree(PIWIND, models / "piwind")
    for path in [models, *models.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    scaling = models / "piwind" / "meta-data" / "scaling_configuration.json"
    scaling.write_text(json.dumps(json.loads(scaling.read_text()) | {"scaling_strategy": "FIXED_WORKERS", "worker_count_fixed": V2_WORKERS}))
    write_registry(models / "registry.yaml", default_identity() | {"path": "piwind"})
    return models


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory):
    engine = Engine.start(tmp_path_factory.mktemp("dockerd") / "dockerd.log")
    yield engine
    engine.stop()


@pytest.fixture(scope="module")
def images(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Images:
    """Built once per session (and kept: the next session reuses them while their inputs are unchanged)."""
    images = required_images(tmp_path_factory.mktemp("images"))
    log(f"images: {images}; worker image {image_size(images.worker) / 2**30:.2f} GiB")
    return images


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory, piwind_root: Path) -> Model:
    """The model as the stack's registry has it (its DAG ids, queues, pools)."""
    base = tmp_path_factory.mktemp("compose")
    registry = load_registry(models_folder(base) / "registry.yaml")
    (found,) = registry.models
    return found


@pytest.fixture(scope="module")
def stack(images: Images, model: Model, tmp_path_factory: pytest.TempPathFactory):
    """``up -d`` of the committed file until every service is healthy, PiWind's exposure files in its
    storage root; ``down --volumes`` at the end, the services' logs kept in ``compose.log``."""
    base = tmp_path_factory.mktemp("stack")
    project, api_port, flower_port = new_project()
    secrets = generated_secrets()
    env = env_file(base / ".env", secrets | {
        "OASIS_MODELS_DIR": str(model.root.parent),
        "OASIS_WORKER_IMAGE": images.worker,
        "OASIS_POSTGRES_IMAGE": images.postgres,
        "OASIS_REDIS_IMAGE": images.redis,
        "AIRFLOW_API_PORT": str(api_port),
        "FLOWER_PORT": str(flower_port),
        "AIRFLOW_TASK_HEARTBEAT_TIMEOUT": str(HEARTBEAT_TIMEOUT),
    })
    stack = ComposeStack(compose_v1(), project, env, secrets["OASIS_ADMIN_PASSWORD"], api_port)
    try:
        log(f"up: {stack.up():.0f} s with {stack.program.version}")
        stack.put(PIWIND, ["exposure"])
        dag_ids = [model.dag_id(mode) for mode in Mode]
        poll_until(lambda: stack.rest.has_dags(dag_ids), 300, f"{dag_ids} are not parsed")
        yield stack
    finally:
        (base / "compose.log").write_text(stack.logs())
        log(f"services' logs: {base / 'compose.log'}")
        stack.down("--volumes")


def v2_service(model: Model) -> str:
    return worker(model, Mode.V2).name


# --- runs over REST ---


@dataclass(frozen=True)
class RestRun:
    """A DAG run triggered over REST and its published ``output/``, copied out of the storage volume."""

    dag_id: str
    run_id: str
    analysis_id: str
    output: Path
    #: Queued to finished, by the DAG run's own dates.
    seconds: float


def seconds_between(start: str, end: str) -> float:
    from datetime import datetime

    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def trigger(stack: ComposeStack, dag_id: str, analysis_id: str, **extra: Any) -> str:
    run_id = f"{analysis_id}-{int(time.time())}"
    stack.rest.trigger(dag_id, run_id, CASE.conf(analysis_id, **extra))
    return run_id


def finish(stack: ComposeStack, dag_id: str, run_id: str, analysis_id: str, base: Path, timeout: float = RUN_TIMEOUT) -> RestRun:
    state = stack.rest.wait(dag_id, run_id, timeout=timeout)
    failed = [f"{ti['task_id']}[{ti['map_index']}] {ti['state']}" for ti in stack.rest.task_instances(dag_id, run_id) if ti["state"] != "success"]
    assert state == "success", f"{dag_id} {run_id} {state}: {failed}"
    dag_run = stack.rest.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")
    output = stack.get(f"analyses/{analysis_id}/output", base / analysis_id / "output")
    return RestRun(dag_id, run_id, analysis_id, output, seconds_between(dag_run["queued_at"], dag_run["end_date"]))


def numba_cache(stack: ComposeStack, container: Container) -> dict[str, str]:
    """The kernels cached in ``container``: file -> size and modification time."""
    listing = stack.exec(container, "find", NUMBA_CACHE, "-type", "f", "-printf", "%P %s %T@\\n").decode()
    return {name: stamp for name, _, stamp in (line.partition(" ") for line in listing.splitlines())}


@pytest.fixture(scope="module")
def rest_v1(stack: ComposeStack, model: Model, tmp_path_factory: pytest.TempPathFactory) -> list[RestRun]:
    """PiWind's RI case through v1 twice: first on fresh containers, then warm. The v1 worker's numba
    cache must be the image's after the first: a kernel compiled at run time would show there."""
    base = tmp_path_factory.mktemp("rest_v1")
    worker_container = stack.container(worker(model, Mode.V1).name)
    built = numba_cache(stack, worker_container)
    assert built, f"the image has no compiled kernels in {NUMBA_CACHE}"
    runs = []
    for name in ("compose-v1-fresh", "compose-v1-warm"):
        dag_id = model.dag_id(Mode.V1)
        runs.append(finish(stack, dag_id, trigger(stack, dag_id, name), name, base))
        after = numba_cache(stack, worker_container)
        compiled = sorted(file for file, stamp in after.items() if stamp != built.get(file))
        assert not compiled, f"{name}: kernels compiled at run time, missing from the image's warm-up: {compiled}"
    return runs


def test_every_service_becomes_healthy_and_the_init_job_migrates_and_creates_pools_and_the_admin(stack: ComposeStack, model: Model):
    import requests

    containers = stack.containers()
    assert {c.service for c in containers} == set(stack.services())
    for container in containers:
        if container.service == "airflow-init":
            assert (container.status, container.exit_code) == ("exited", 0)
        else:
            assert container.ready, container
    init = stack.logs("airflow-init")
    assert "Database migration done!" in init, init[-3000:]
    for pool, slots in model_pools(model).items():
        assert f"pool {pool}: {slots} slot(s)" in init, init[-3000:]
    assert {pool: stack.rest.pools()[pool] for pool in model_pools(model)} == model_pools(model)
    assert model_pools(model)[model.queue(Mode.V2)] == V2_WORKERS * model.worker_concurrency(Mode.V2)
    assert stack.rest.token(), "admin cannot log in with the .env password"
    assert requests.get(f"{stack.oasis_url}/healthcheck/", timeout=30).status_code == 200  # the Oasis API plugin is served


def test_every_airflow_service_runs_the_worker_image_as_a_non_root_user(stack: ComposeStack, images: Images):
    airflow = [c for c in stack.containers() if c.service not in ("postgres", "redis", "airflow-init")]
    assert len(airflow) >= 7, airflow
    worker_image_id = run(["docker", "image", "inspect", "--format", "{{.Id}}", images.worker], timeout=60).stdout.strip()
    for container in airflow:
        assert run(["docker", "inspect", "--format", "{{.Image}}", container.id], timeout=60).stdout.strip() == worker_image_id
        status = stack.exec(container, "cat", "/proc/1/status").decode()
        uids = next(line.split()[1:] for line in status.splitlines() if line.startswith("Uid:"))
        assert set(uids) == {"50000"}, f"{container.name}: PID 1 runs as {uids}"


def test_the_image_holds_exactly_the_pinned_requirements(images: Images):
    """What ``pip freeze`` lists in the image is what requirements.txt pins for the image's Python (its
    environment markers evaluated there): nothing unpinned, no foreign provider, nothing missing."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    def in_image(*command: str) -> str:
        return run(["docker", "run", "--rm", "--network", "none", images.worker, *command], timeout=300).stdout

    python = in_image("python", "-c", "import platform; print(platform.python_version())").strip()
    environment = {"python_full_version": python, "python_version": python.rsplit(".", 1)[0]}
    pinned = set()
    for line in (REPO / "requirements.txt").read_text().splitlines():
        if line.split("#")[0].strip():
            requirement = Requirement(line.split("#")[0])
            if requirement.marker is None or requirement.marker.evaluate(environment):
                pinned.add(f"{canonicalize_name(requirement.name)}=={str(requirement.specifier).removeprefix('==')}")
    installed = {
        f"{canonicalize_name(name)}=={version}" for name, _, version in (line.partition("==") for line in in_image("pip", "freeze").splitlines()) if version
    }
    assert installed == pinned, f"Python {python}: not pinned: {sorted(installed - pinned)}; missing: {sorted(pinned - installed)}"


def test_v1_over_rest_gives_piwind_expected_outputs_on_fresh_and_warm_containers_with_the_image_kernels(rest_v1: list[RestRun]):
    """The kernels were checked by the fixture; the times are logged for the README (measured, not asserted)."""
    fresh, warm = rest_v1
    for dag_run in rest_v1:
        assert_outputs_match(CASE.expected, dag_run.output)
    assert_same_files(fresh.output, warm.output)
    log(f"v1 PiWind RI: first analysis on fresh containers {fresh.seconds:.1f} s, warm {warm.seconds:.1f} s ({fresh.seconds / warm.seconds:.2f}x)")


# --- v2 on two workers: a killed worker, a restarted scheduler ---


def tries(stack: ComposeStack, dag_id: str, run_id: str, task_id: str, map_index: int) -> list[dict[str, Any]]:
    path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/{map_index}/tries"
    return stack.rest.request("GET", path)["task_instances"]


def test_v2_over_rest_on_two_workers_survives_a_killed_worker_and_a_restarted_scheduler(
    stack: ComposeStack, model: Model, rest_v1: list[RestRun], tmp_path: Path
):
    service = v2_service(model)
    stack.up("--scale", f"{service}={V2_WORKERS}")
    workers = [c for c in stack.containers(service) if c.ready]
    assert len(workers) == V2_WORKERS
    dag_id = model.dag_id(Mode.V2)
    run_id = trigger(stack, dag_id, "compose-v2-rest", chunking=V2_CHUNKING)

    running = stack.rest.wait_for_task(dag_id, run_id, "running", "loss_chunk", timeout=RUN_TIMEOUT)[0]
    victim = next(c for c in workers if c.address == running["hostname"])
    run(["docker", "kill", victim.id], timeout=60)
    log(f"killed {victim.name} running loss chunk {running['map_index']}; restarting the scheduler")
    run(["docker", "restart", "--time", "30", stack.container("scheduler").id], timeout=120)

    result = finish(stack, dag_id, run_id, "compose-v2-rest", tmp_path, timeout=RUN_TIMEOUT + QUEUED_TIMEOUT)
    assert_outputs_match(CASE.expected, result.output)
    assert_same_files(rest_v1[0].output, result.output)  # v1 = v2, byte for byte
    history = tries(stack, dag_id, run_id, "loss_chunk", running["map_index"])
    assert history[0]["hostname"] == victim.address and history[-1]["state"] == "success", history
    assert len(history) >= 2, f"loss chunk {running['map_index']} was not retried: {history}"


# --- oasislmf's client ---


@dataclass(frozen=True)
class ClientTarget:
    """What :func:`harness.oasis_client.api_run` needs: the server, and where the exposure files it uploads are."""

    oasis_url: str
    storage: Path


@pytest.fixture(scope="module")
def client_runs(stack: ComposeStack, model: Model, tmp_path_factory: pytest.TempPathFactory) -> dict[str, ClientRun]:
    """``oasislmf api run`` v1, then v2 (2 lookup chunks, 4 loss chunks) on :data:`V2_WORKERS` v2 workers."""
    stack.up("--scale", f"{v2_service(model)}={V2_WORKERS}")  # the killed worker back
    base = tmp_path_factory.mktemp("client")
    login = login_file(base, "admin", stack.password)
    target = ClientTarget(stack.oasis_url, PIWIND)
    model_id = Oasis.login(stack.oasis_url, "admin", stack.password).model_id(model.supplier_id, model.model_id, model.version_id)
    return {
        "v1": api_run(target, login, base / "v1", "v1", model_id, CASE.files, SETTINGS),
        "v2": api_run(target, login, base / "v2", "v2", model_id, CASE.files, SETTINGS, "--lookup-chunks", "2", "--analysis-chunks", "4"),
    }


def test_oasis_api_client_runs_v1_and_v2_with_piwind_expected_outputs(client_runs: dict[str, ClientRun], rest_v1: list[RestRun]):
    for client_run in client_runs.values():
        assert_outputs_match(CASE.expected, client_run.output)
    assert_same_files(client_runs["v1"].output, client_runs["v2"].output)
    assert_same_files(rest_v1[0].output, client_runs["v1"].output)


def test_v2_loss_chunks_run_on_both_v2_workers(stack: ComposeStack, model: Model, client_runs: dict[str, ClientRun]):
    dag_id = model.dag_id(Mode.V2)
    (run,) = [
        r for r in stack.rest.dag_runs(dag_id)
        if r["conf"].get("analysis_id") == f"oasis-api-{client_runs['v2'].analysis_id}" and r["conf"].get("action") == "run"
    ]
    chunks = [ti for ti in stack.rest.task_instances(dag_id, run["dag_run_id"]) if ti["task_id"] == "loss_chunk"]
    assert len(chunks) == 4 and {ti["state"] for ti in chunks} == {"success"}, chunks
    workers = {c.address for c in stack.containers(v2_service(model)) if c.ready}
    assert len(workers) == V2_WORKERS
    assert {ti["hostname"] for ti in chunks} == workers


# --- down and up again ---


def test_down_and_up_again_keeps_earlier_analyses_and_their_results(
    stack: ComposeStack, model: Model, rest_v1: list[RestRun], client_runs: dict[str, ClientRun], tmp_path: Path
):
    stack.down()
    assert not stack.containers()
    other = compose_v2(tmp_path) if not stack.program.is_v2 else compose_v1()
    again = ComposeStack(other, stack.project, stack.env, stack.password, stack.api_port)
    log(f"up again: {again.up():.0f} s with {other.version}")

    fresh = rest_v1[0]
    assert again.rest.run_state(fresh.dag_id, fresh.run_id) == "success"
    assert_same_files(fresh.output, again.get(f"analyses/{fresh.analysis_id}/output", tmp_path / "v1"))

    oasis = Oasis.login(again.oasis_url, "admin", again.password)
    analysis = client_runs["v2"].analysis_id
    assert oasis.status("v2", analysis) == "RUN_COMPLETED"
    archive = tmp_path / "output.tar.gz"
    archive.write_bytes(oasis.call("GET", f"v2/analyses/{analysis}/output_file/").content)
    with tarfile.open(archive) as tar:
        tar.extractall(tmp_path / "extracted", filter="data")
    assert_same_files(client_runs["v2"].output, tmp_path / "extracted" / "output")
