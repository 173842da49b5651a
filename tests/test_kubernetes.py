"""Kubernetes workers: KEDA scaling queries run against a real, migrated Airflow metadata database
(PostgreSQL on localhost:5432), the rendered manifests, and the KubernetesExecutor pod override."""

from __future__ import annotations

import re
import subprocess
import sys
import uuid
from dataclasses import replace

import pytest
import yaml

from harness.airflow_home import BIN, REPO, clean_environ
from harness.registry import write_registry
from oasis_ops.constants import Executor, Mode
from oasis_ops.deploy.kubernetes import main, render_manifests, scaling_query, worker_name
from oasis_ops.executors import executor_kwargs
from oasis_ops.scaling import ScalingConfig

PG = {"host": "localhost", "port": 5432, "user": "postgres"}
V1, V2 = "OasisLMF-PiWind-1", "OasisLMF-PiWind-1-v2"

# (dag_id, run_id, queue, {state: task instances}). On the PiWind queues: v1 has 4 active runs
# (4 tasks), v2 has 3 active runs (7 + 5 + 4 + 2 + 1 + 6 = 25 tasks; scheduled ones wait for a pool
# slot and count as demand); finished ones and other queues must not count.
RUNS = [
    ("oasislmf_piwind_1_v1", "r1", V1, {"running": 1}),
    ("oasislmf_piwind_1_v1", "r2", V1, {"queued": 1}),
    ("oasislmf_piwind_1_v1", "r3", V1, {"queued": 1}),
    ("oasislmf_piwind_1_v1", "r4", V1, {"success": 1}),
    ("oasislmf_piwind_1_v1", "r5", V1, {"scheduled": 1}),
    ("oasislmf_piwind_1_v2", "a", V2, {"running": 7, "queued": 5, "success": 3, "scheduled": 4}),
    ("oasislmf_piwind_1_v2", "b", V2, {"queued": 2, "running": 1}),
    ("oasislmf_piwind_1_v2", "c", V2, {"success": 6, "scheduled": 6}),
    # another model's queues, one of them starting with PiWind 1's v1 queue name
    *[("oasislmf_piwind_10_v1", f"o{i}", "OasisLMF-PiWind-10", {"queued": 1}) for i in range(12)],
    *[("oasislmf_piwind_10_v2", f"o{i}", "OasisLMF-PiWind-10-v2", {"running": 9, "queued": 9}) for i in range(12)],
    # a model with only finished and waiting work
    ("oasislmf_piwind_idle_v1", "i1", "OasisLMF-PiWind-idle", {"success": 2, "failed": 1}),
    ("oasislmf_piwind_idle_v2", "i1", "OasisLMF-PiWind-idle-v2", {"success": 9, "upstream_failed": 9}),
]


def _connect(dbname: str):
    import psycopg2

    return psycopg2.connect(dbname=dbname, **PG)


def _admin(sql: str) -> None:
    connection = _connect("postgres")
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql)
    finally:
        connection.close()


def _insert_runs(connection) -> None:
    with connection.cursor() as cursor:
        cursor.execute("INSERT INTO dag_bundle (name, active) VALUES ('dags-folder', true)")
        for dag_id in sorted({run[0] for run in RUNS}):
            cursor.execute(
                "INSERT INTO dag (dag_id, is_paused, is_stale, bundle_name, timetable_type, partition_mapper_info,"
                " max_active_tasks, max_consecutive_failed_dag_runs, has_task_concurrency_limits)"
                " VALUES (%s, false, false, 'dags-folder', '', '[]', 1024, 0, false)",
                (dag_id,),
            )
            cursor.execute(
                "INSERT INTO dag_version (id, version_number, dag_id, bundle_name, created_at, last_updated)"
                " VALUES (%s, 1, %s, 'dags-folder', now(), now())",
                (str(uuid.uuid4()), dag_id),
            )
        for dag_id, run_id, queue, states in RUNS:
            cursor.execute(
                "INSERT INTO dag_run (dag_id, run_id, run_type, run_after, state)"
                " VALUES (%s, %s, 'manual', now(), 'running')",
                (dag_id, run_id),
            )
            for state, count in states.items():
                for map_index in range(count):
                    cursor.execute(
                        "INSERT INTO task_instance (id, task_id, dag_id, run_id, map_index, try_number, max_tries,"
                        " pool, pool_slots, queue, state, priority_weight, dag_version_id)"
                        " SELECT %s, %s, %s, %s, %s, 1, 2, %s, 1, %s, %s, 4, id FROM dag_version WHERE dag_id = %s",
                        (str(uuid.uuid4()), f"chunk_{state}", dag_id, run_id, map_index, queue, queue, state, dag_id),
                    )
    connection.commit()


@pytest.fixture(scope="module")
def metadata_db(tmp_path_factory):
    """A throw-away PostgreSQL database with Airflow's schema, holding the task instances of ``RUNS``."""
    import psycopg2

    try:
        _connect("postgres").close()
    except psycopg2.OperationalError as exc:
        pytest.skip(f"no PostgreSQL on localhost:5432 ({exc}); start it with pg_ctlcluster")
    name = f"oasis_k8s_test_{uuid.uuid4().hex[:12]}"
    _admin(f"CREATE DATABASE {name}")
    try:
        env = clean_environ() | {
            "AIRFLOW_HOME": str(tmp_path_factory.mktemp("airflow_pg")),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"postgresql+psycopg2://postgres@localhost:5432/{name}",
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        }
        command = [str(BIN / "airflow"), "db", "migrate"]
        migrate = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
        assert migrate.returncode == 0, migrate.stdout[-3000:] + migrate.stderr[-3000:]
        connection = _connect(name)
        try:
            _insert_runs(connection)
            yield connection
        finally:
            connection.close()
    finally:
        _admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _scaled_object(model, mode: Mode) -> dict:
    name = worker_name(model, mode)
    (found,) = [m for m in render_manifests([model]) if m["kind"] == "ScaledObject" and m["metadata"]["name"] == name]
    return found


def replicas(connection, model, mode: Mode) -> int:
    """What KEDA would scale the worker to: the rendered trigger's query, run on the metadata database."""
    scaled = _scaled_object(model, mode)
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "postgresql" and trigger["metadata"]["targetQueryValue"] == "1"
    with connection.cursor() as cursor:
        cursor.execute(trigger["metadata"]["query"])
        rows = cursor.fetchall()
    connection.rollback()
    assert len(rows) == 1 and len(rows[0]) == 1 and isinstance(rows[0][0], int), rows
    value = rows[0][0]
    # the ScaledObject's bounds never clip what the rule asks for
    assert scaled["spec"]["minReplicaCount"] <= value <= scaled["spec"]["maxReplicaCount"]
    return value


def _scaling(strategy: str, **fields) -> ScalingConfig:
    return ScalingConfig(scaling_strategy=strategy, **fields)


# scaling, replicas for v1 (4 runs, 4 tasks) and v2 (3 runs, 25 tasks) when busy, and when idle
CASES = {
    "fixed": (_scaling("FIXED_WORKERS", worker_count_fixed=3), 3, 3, 0),
    "fixed below min": (_scaling("FIXED_WORKERS", worker_count_fixed=1, worker_count_min=2), 2, 2, 2),
    "fixed above max": (_scaling("FIXED_WORKERS", worker_count_fixed=12, worker_count_max=10), 12, 12, 0),
    "queue load": (_scaling("QUEUE_LOAD"), 4, 3, 0),
    "queue load capped": (_scaling("QUEUE_LOAD", worker_count_max=2), 2, 2, 0),
    "queue load min": (_scaling("QUEUE_LOAD", worker_count_min=5), 5, 5, 5),
    "dynamic default": (_scaling("DYNAMIC_TASKS"), 4, 3, 0),
    "dynamic 4 per worker": (_scaling("DYNAMIC_TASKS", chunks_per_worker=4), 4, 7, 0),
    "dynamic exact": (_scaling("DYNAMIC_TASKS", chunks_per_worker=5), 4, 5, 0),
    "dynamic one worker": (_scaling("DYNAMIC_TASKS", chunks_per_worker=25), 4, 1, 0),
    "dynamic capped": (_scaling("DYNAMIC_TASKS", chunks_per_worker=1), 4, 10, 0),
    "dynamic capped low": (_scaling("DYNAMIC_TASKS", chunks_per_worker=1, worker_count_max=2), 2, 2, 0),
    "dynamic min": (_scaling("DYNAMIC_TASKS", chunks_per_worker=10, worker_count_min=6), 6, 6, 6),
}


@pytest.mark.parametrize("case", CASES)
def test_scaling_query_gives_the_rule_replica_count(metadata_db, piwind_model, case):
    scaling, busy_v1, busy_v2, idle = CASES[case]
    model = replace(piwind_model, scaling=scaling)
    assert (model.queue(Mode.V1), model.queue(Mode.V2)) == (V1, V2)
    assert (replicas(metadata_db, model, Mode.V1), replicas(metadata_db, model, Mode.V2)) == (busy_v1, busy_v2)
    # only finished task instances, or none at all: worker_count_min (0: scale to zero)
    for version in ("idle", "none"):
        quiet = replace(model, version_id=version)
        assert (replicas(metadata_db, quiet, Mode.V1), replicas(metadata_db, quiet, Mode.V2)) == (idle, idle)


def test_v1_dynamic_tasks_is_queue_load(piwind_model):
    """DYNAMIC_TASKS counts a queue's task instances: right for v2's chunks, while a v1 analysis is one
    task, so v1 scales on its analyses (QUEUE_LOAD)."""
    dynamic = replace(piwind_model, scaling=_scaling("DYNAMIC_TASKS", chunks_per_worker=4, worker_count_min=1, worker_count_max=9))
    active = "state IN ('scheduled', 'queued', 'running')"
    assert scaling_query(dynamic, Mode.V1) == (
        "SELECT (CASE WHEN COUNT(*) = 0 THEN 1 ELSE GREATEST(LEAST(COUNT(DISTINCT (dag_id, run_id)), 9), 1) END)::integer "
        f"FROM task_instance WHERE queue = 'OasisLMF-PiWind-1' AND {active}"
    )
    assert scaling_query(dynamic, Mode.V2) == (
        "SELECT (CASE WHEN COUNT(*) = 0 THEN 1 ELSE GREATEST(LEAST(CEIL(COUNT(*)::numeric / 4), 9), 1) END)::integer "
        f"FROM task_instance WHERE queue = 'OasisLMF-PiWind-1-v2' AND {active}"
    )


def test_a_quote_in_a_queue_name_stays_inside_the_literal(metadata_db, piwind_model):
    model = replace(piwind_model, version_id="1' OR queue <> '", scaling=_scaling("QUEUE_LOAD"))
    assert replicas(metadata_db, model, Mode.V1) == 0


# --- manifests ---


def _containers(deployment: dict) -> dict:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


def _option(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def test_manifests_per_model_and_mode(piwind_model):
    scaling = _scaling("QUEUE_LOAD", worker_count_min=1, worker_count_max=7, v2_worker_concurrency=3)
    model = replace(piwind_model, scaling=scaling)
    k8s_model = replace(piwind_model, model_id="PiWindK8s", executor=Executor.KUBERNETES)
    manifests = render_manifests([model, k8s_model], storage_claim="st", models_claim="md", db_connection_env="DB_URL")
    assert [(m["apiVersion"], m["kind"], m["metadata"]["name"]) for m in manifests] == [
        ("apps/v1", "Deployment", "oasislmf-piwind-1-worker"),
        ("keda.sh/v1alpha1", "ScaledObject", "oasislmf-piwind-1-worker"),
        ("apps/v1", "Deployment", "oasislmf-piwind-1-v2-worker"),
        ("keda.sh/v1alpha1", "ScaledObject", "oasislmf-piwind-1-v2-worker"),
    ]
    assert "PiWindK8s" not in yaml.safe_dump_all(manifests)  # its tasks run as pods: no Celery worker
    deployments, scaled_objects = manifests[0::2], manifests[1::2]
    for deployment, scaled, queue, concurrency in zip(deployments, scaled_objects, (V1, V2), ("1", "3"), strict=True):
        assert deployment["metadata"]["namespace"] == scaled["metadata"]["namespace"] == "oasis"
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", deployment["metadata"]["name"])
        pod = deployment["spec"]["template"]
        assert deployment["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
        container = _containers(deployment)
        assert container["image"] == model.worker_image
        args = container["args"]
        assert args[:3] == ["airflow", "celery", "worker"]
        assert (_option(args, "--queues"), _option(args, "--concurrency")) == (queue, concurrency)
        assert pod["spec"]["securityContext"]["runAsUser"] == 50000 and pod["spec"]["securityContext"]["runAsNonRoot"]
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        claims = {v["name"]: v["persistentVolumeClaim"] for v in pod["spec"]["volumes"]}
        mounts = {m["name"]: m for m in container["volumeMounts"]}
        mounted = {claims[name]["claimName"]: (m["mountPath"], m.get("readOnly", False)) for name, m in mounts.items()}
        assert mounted == {
            "st": ("/opt/oasis/storage", False),
            "md": ("/opt/oasis/models", True),
        }
        assert claims["models"]["readOnly"] and not claims["storage"].get("readOnly")
        env = {e["name"]: e for e in container["env"]}
        assert env["OASIS_STORAGE_ROOT"]["value"] == "/opt/oasis/storage"
        assert env["PYTHONHASHSEED"]["value"] == "0" and "NUMBA_CACHE_DIR" not in env  # the image's baked cache
        # as on the Celery stack: the worker imports oasislmf once, before forking its pool
        assert env["AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS"]["value"] == "oasis_ops.deploy.celery_config.CELERY_CONFIG"
        # KEDA reads the database URL from the environment of the Deployment it scales
        (trigger,) = scaled["spec"]["triggers"]
        assert trigger["metadata"]["connectionFromEnv"] == "DB_URL" and "secretKeyRef" in env["DB_URL"]["valueFrom"]
        assert trigger["metadata"]["query"] == scaling_query(model, Mode.V1 if queue == V1 else Mode.V2)
        assert scaled["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
        assert (scaled["spec"]["minReplicaCount"], scaled["spec"]["maxReplicaCount"]) == (1, 7)
        assert scaled["spec"]["cooldownPeriod"] > 0


def test_fixed_workers_bounds_allow_the_fixed_count(piwind_model):
    model = replace(piwind_model, scaling=_scaling("FIXED_WORKERS", worker_count_fixed=12, worker_count_max=10))
    for mode in Mode:
        spec = _scaled_object(model, mode)["spec"]
        assert spec["minReplicaCount"] == 0 and spec["maxReplicaCount"] >= 12


def test_cli_renders_the_registry_as_yaml(tmp_path, piwind_entry):
    broken = {"supplier_id": "X", "model_id": "Y", "version_id": "1", "path": "missing"}
    registry = write_registry(tmp_path / "registry.yaml", piwind_entry, broken)
    env = clean_environ() | {"OASIS_MODEL_REGISTRY": str(registry), "PYTHONPATH": str(REPO / "plugins")}
    done = subprocess.run(
        [sys.executable, "-m", "oasis_ops.deploy.kubernetes", "render"], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    documents = list(yaml.safe_load_all(done.stdout))
    assert [(d["kind"], d["metadata"]["name"]) for d in documents] == [
        ("Deployment", "oasislmf-piwind-1-worker"),
        ("ScaledObject", "oasislmf-piwind-1-worker"),
        ("Deployment", "oasislmf-piwind-1-v2-worker"),
        ("ScaledObject", "oasislmf-piwind-1-v2-worker"),
    ]
    assert done.stderr == (
        f"skipped: {registry} models[1] (X/Y/1): path 'missing' is not a folder (resolved to {tmp_path / 'missing'})\n"
    )


def test_cli_registry_option(tmp_path, piwind_entry, capsys):
    registry = write_registry(tmp_path / "registry.yaml", piwind_entry | {"executor": "KubernetesExecutor"})
    assert main(["render", "--registry", str(registry)]) == 0
    assert list(yaml.safe_load_all(capsys.readouterr().out)) == []


# --- KubernetesExecutor ---


def test_default_executor_needs_no_kwargs(piwind_model):
    assert executor_kwargs(piwind_model) == {}
    assert executor_kwargs(replace(piwind_model, executor=Executor.CELERY)) == {}


def test_kubernetes_executor_pod_override(piwind_model):
    from airflow.providers.cncf.kubernetes.pod_generator import PodGenerator
    from kubernetes.client import models as k8s

    model = replace(piwind_model, executor=Executor.KUBERNETES, worker_image="registry.example/oasis-worker:7")
    kwargs = executor_kwargs(model)
    assert kwargs["executor"] == "KubernetesExecutor" and set(kwargs) == {"executor", "executor_config"}
    override = PodGenerator.from_obj(kwargs["executor_config"])  # as the executor reads it
    assert isinstance(override, k8s.V1Pod)
    # merged into the executor's pod as it builds each task's pod
    base = k8s.V1Pod(spec=k8s.V1PodSpec(containers=[k8s.V1Container(name="base", image="apache/airflow:3.3.2")]))
    pod = PodGenerator.construct_pod(
        dag_id=model.dag_id(Mode.V2),
        task_id="loss_chunk",
        pod_id="loss-chunk",
        try_number=1,
        kube_image="apache/airflow:3.3.2",
        date=None,
        args=["airflow", "tasks", "run"],
        pod_override_object=override,
        base_worker_pod=base,
        namespace="oasis",
        scheduler_job_id="1",
    )
    (container,) = pod.spec.containers
    assert (container.name, container.image) == ("base", "registry.example/oasis-worker:7")
    assert container.args == ["airflow", "tasks", "run"]
    claims = {v.name: v.persistent_volume_claim.claim_name for v in pod.spec.volumes}
    mounts = {claims[m.name]: (m.mount_path, bool(m.read_only)) for m in container.volume_mounts}
    assert mounts == {"oasis-storage": ("/opt/oasis/storage", False), "oasis-model-data": ("/opt/oasis/models", True)}
    env = {e.name: e.value for e in container.env}
    assert env["OASIS_STORAGE_ROOT"] == "/opt/oasis/storage" and env["PYTHONHASHSEED"] == "0"
    assert pod.spec.security_context.run_as_user == 50000 and pod.spec.security_context.run_as_non_root
    assert container.resources.requests == {"cpu": "1"}
