"""The model registry: entries, their meta-data, and broken entries reported one by one."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from harness.registry import write_registry
from oasis_ops.chunking import ChunkingConfig
from oasis_ops.constants import Executor, Mode, TaskKind
from oasis_ops.registry import load_registry
from oasis_ops.scaling import ScalingConfig

TASK_KINDS = "['run_analysis', 'prepare', 'lookup_chunk', 'write_input_files', 'loss_chunk', 'plan_outputs', 'output_part', 'aggregate']"


def make_model(root: Path, **meta: dict) -> Path:
    (root / "meta-data").mkdir(parents=True)
    (root / "oasislmf.json").write_text(json.dumps({"model_data_dir": "model_data"}))
    (root / "meta-data" / "model_settings.json").write_text("{}")
    for name, content in meta.items():
        (root / "meta-data" / f"{name}.json").write_text(json.dumps(content))
    return root


def entry(model_id: str = "M", **fields: object) -> dict:
    return {"supplier_id": "A", "model_id": model_id, "version_id": "1", "path": "m", **fields}


def test_piwind_entry_loads_with_its_meta_data(tmp_path, piwind_entry):
    registry = load_registry(write_registry(tmp_path / "r.yaml", piwind_entry))
    assert registry.errors == ()
    (model,) = registry.models
    assert (model.dag_id(Mode.V1), model.dag_id(Mode.V2)) == ("oasislmf_piwind_1_v1", "oasislmf_piwind_1_v2")
    assert (model.queue(Mode.V1), model.queue(Mode.V2)) == ("OasisLMF-PiWind-1", "OasisLMF-PiWind-1-v2")
    assert (model.worker_name(Mode.V1), model.worker_name(Mode.V2)) == ("oasislmf-piwind-1", "oasislmf-piwind-1-v2")
    assert (model.worker_concurrency(Mode.V1), model.worker_concurrency(Mode.V2)) == (1, 2)
    assert model.executor is None and not model.runs_on_kubernetes
    # PiWind ships chunking_configuration.json: its values win over the defaults, the rest stay default.
    assert model.chunking.fixed_lookup_chunks == 5
    assert model.chunking.dynamic_events_per_analysis == 100
    assert model.chunking.dynamic_chunks_max == 200
    assert model.scaling.worker_count_min == 0


def test_relative_paths_are_relative_to_the_registry_file(tmp_path):
    make_model(tmp_path / "models" / "m")
    registry = load_registry(
        write_registry(tmp_path / "r.yaml", {"supplier_id": "Acme", "model_id": "Quake EU", "version_id": 2, "path": "models/m"})
    )
    (model,) = registry.models
    assert model.root == (tmp_path / "models" / "m").resolve()
    assert model.chunking == ChunkingConfig() and model.scaling == ScalingConfig()
    assert model.dag_id(Mode.V1) == "acme_quake_eu_2_v1"
    assert model.queue(Mode.V1) == "Acme-Quake EU-2"
    assert model.worker_name(Mode.V2) == "acme-quake-eu-2-v2"


def test_the_executor_is_an_enum(tmp_path):
    make_model(tmp_path / "m")
    registry = load_registry(write_registry(tmp_path / "r.yaml", entry(executor="KubernetesExecutor", worker_image="w:1")))
    (model,) = registry.models
    assert model.executor is Executor.KUBERNETES and model.runs_on_kubernetes and model.worker_image == "w:1"


def test_a_broken_entry_is_reported_and_the_others_still_load(tmp_path):
    make_model(tmp_path / "good")
    make_model(tmp_path / "badchunk", chunking_configuration={"fixed_analysis_chunks": 0})
    (tmp_path / "badjson" / "meta-data").mkdir(parents=True)
    (tmp_path / "badjson" / "oasislmf.json").write_text("{not json")
    path = write_registry(
        tmp_path / "r.yaml",
        {"supplier_id": "A", "model_id": "Good", "version_id": "1", "path": "good"},
        {"supplier_id": "A", "model_id": "Missing", "version_id": "1", "path": "nowhere"},
        {"supplier_id": "A", "model_id": "BadChunk", "version_id": "1", "path": "badchunk"},
        {"supplier_id": "A", "model_id": "BadJson", "version_id": "1", "path": "badjson"},
        {"supplier_id": "A", "model_id": "NoVersion", "path": "good"},
        {"supplier_id": "A", "model_id": "Good", "version_id": "1", "path": "good"},
    )
    registry = load_registry(path)
    assert [m.model_id for m in registry.models] == ["Good"]
    assert len(registry.errors) == 5
    assert [(e.entry, e.reason) for e in registry.errors[:2] + registry.errors[3:]] == [
        (f"{path} models[1] (A/Missing/1)", f"path 'nowhere' is not a folder (resolved to {tmp_path / 'nowhere'})"),
        (
            f"{path} models[2] (A/BadChunk/1)",
            f"{tmp_path / 'badchunk' / 'meta-data' / 'chunking_configuration.json'}: fixed_analysis_chunks must be an integer >= 1, got 0",
        ),
        (f"{path} models[4]", "missing field(s) ['version_id']"),
        (f"{path} models[5] (A/Good/1)", f"its DAG id or queue a_good_1_v1 is already taken by {path} models[0] (A/Good/1); give it distinct ids"),
    ]
    # The JSON parser's own words follow; the reason names the file and the problem first.
    bad_json = registry.errors[2]
    assert bad_json.entry == f"{path} models[3] (A/BadJson/1)"
    assert bad_json.reason.startswith(f"{tmp_path / 'badjson' / 'oasislmf.json'} is not valid JSON: Expecting property name")


def test_an_unreadable_registry_is_one_error(tmp_path):
    registry = load_registry(tmp_path / "absent.yaml")
    (error,) = registry.errors
    assert registry.models == () and error.reason.startswith("cannot read the model registry: [Errno 2] No such file or directory")
    (tmp_path / "list.yaml").write_text("- just a list\n")
    (error,) = load_registry(tmp_path / "list.yaml").errors
    assert (error.entry, error.reason) == (str(tmp_path / "list.yaml"), "expected a top-level 'models:' list")


@pytest.mark.parametrize(
    "fields, reason",
    [
        (
            {"colour": "red"},
            "unknown field(s) ['colour']; known fields: ['supplier_id', 'model_id', 'version_id', 'path', 'analyses', "
            "'executor', 'worker_image', 'execution_timeout_minutes']",
        ),
        ({"executor": "Spark"}, "executor must be one of ['CeleryExecutor', 'KubernetesExecutor'] or absent, got 'Spark'"),
    ],
)
def test_bad_fields_are_refused(tmp_path, fields, reason):
    make_model(tmp_path / "m")
    registry = load_registry(write_registry(tmp_path / "r.yaml", entry(**fields)))
    assert registry.models == ()
    assert [e.reason for e in registry.errors] == [reason]


@pytest.mark.parametrize(
    "scaling, message",
    [
        ({"scaling_strategy": "MAGIC"}, "scaling_strategy must be one of ['FIXED_WORKERS', 'QUEUE_LOAD', 'DYNAMIC_TASKS'], got 'MAGIC'"),
        ({"worker_count_min": 5, "worker_count_max": 2}, "worker_count_min (5) exceeds worker_count_max (2)"),
        (
            {"workers": 3},
            "unknown field(s) ['workers']; known fields: ['chunks_per_worker', 'scaling_strategy', 'v2_worker_concurrency', "
            "'worker_count_fixed', 'worker_count_max', 'worker_count_min']",
        ),
    ],
)
def test_bad_scaling_configuration_names_the_field(tmp_path, scaling, message):
    make_model(tmp_path / "m", scaling_configuration=scaling)
    registry = load_registry(write_registry(tmp_path / "r.yaml", entry()))
    assert registry.models == ()
    assert [e.reason for e in registry.errors] == [f"{tmp_path / 'm' / 'meta-data' / 'scaling_configuration.json'}: {message}"]


# --- execution timeouts ---


def test_execution_timeouts_default_per_task_kind_and_are_overridden_per_model(tmp_path):
    make_model(tmp_path / "m")
    path = write_registry(
        tmp_path / "r.yaml", entry("Default"), entry("Slow", execution_timeout_minutes={"loss_chunk": 600, "prepare": 0.5})
    )
    registry = load_registry(path)
    assert registry.errors == ()
    default, slow = registry.models
    assert {kind: default.timeout(kind) for kind in TaskKind} == {kind: kind.default_timeout for kind in TaskKind}
    assert slow.timeout(TaskKind.LOSS_CHUNK) == timedelta(minutes=600)
    assert slow.timeout(TaskKind.PREPARE) == timedelta(seconds=30)
    others = set(TaskKind) - {TaskKind.LOSS_CHUNK, TaskKind.PREPARE}
    assert {kind: slow.timeout(kind) for kind in others} == {kind: kind.default_timeout for kind in others}


@pytest.mark.parametrize(
    "minutes, reason",
    [
        ({"loss": 5}, f"execution_timeout_minutes: 'loss' is not a task kind; use one of {TASK_KINDS}"),
        ({"loss_chunk": 0}, "execution_timeout_minutes.loss_chunk must be a number of minutes > 0, got 0"),
        ({"loss_chunk": -5}, "execution_timeout_minutes.loss_chunk must be a number of minutes > 0, got -5"),
        ({"loss_chunk": "10"}, "execution_timeout_minutes.loss_chunk must be a number of minutes > 0, got '10'"),
        ({"loss_chunk": True}, "execution_timeout_minutes.loss_chunk must be a number of minutes > 0, got True"),
        ({"loss_chunk": None}, "execution_timeout_minutes.loss_chunk must be a number of minutes > 0, got None"),
        ([600], f"execution_timeout_minutes must map task kinds {TASK_KINDS} to minutes, got [600]"),
    ],
)
def test_bad_execution_timeouts_are_a_registry_error_naming_the_field(tmp_path, minutes, reason):
    make_model(tmp_path / "m")
    path = write_registry(tmp_path / "r.yaml", entry("Good"), entry("Bad", execution_timeout_minutes=minutes))
    registry = load_registry(path)
    assert [m.model_id for m in registry.models] == ["Good"]
    assert [(e.entry, e.reason) for e in registry.errors] == [(f"{path} models[1] (A/Bad/1)", reason)]
