"""One DAG per registered model and mode, built from the registry at parse time.

Parse-time cost is the registry's small YAML/JSON files: operators import oasislmf only when they run.
"""

from __future__ import annotations

import json
from collections.abc import MutableMapping
from dataclasses import replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any, cast

from airflow.sdk import DAG, Asset, get_current_context, task
from airflow.sdk.bases.timetable import BaseTimetable
from airflow.sdk.exceptions import AirflowTimetableInvalid

from oasis_ops.chunking import MAX_CHUNKS
from oasis_ops.config import OasisConfig
from oasis_ops.constants import Mode, TaskKind
from oasis_ops.executors import executor_kwargs
from oasis_ops.operators import OasisSingleServerOperator, run_task
from oasis_ops.params import dag_params
from oasis_ops.registry import Model, Registry, RegistryError, load_registry
from oasis_ops.schedules import ScheduledAnalysis
from oasis_ops.storage import Storage

if TYPE_CHECKING:
    from types import ModuleType

#: The Oasis platform retries any failed task twice, 6 s apart.
DEFAULT_ARGS = {"retries": 2, "retry_delay": timedelta(seconds=6), "owner": "oasis"}
REGISTRY_ERRORS_DAG_ID = "oasis_model_registry_errors"


def _default_settings(model: Model) -> dict[str, Any] | None:
    """The model's own ``analysis_settings.json``, if it ships one, pre-fills the trigger form."""
    path = model.root / "analysis_settings.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _doc(model: Model, title: str, queue: str) -> str:
    return (
        f"**{model.key}**, {title}: file preparation (OED exposure + keys lookup -> Oasis input files), then "
        f"losses generation (ELT/PLT/ALT/EPT).\n\nModel root: `{model.root}`. Queue: `{queue}`. "
        "Results: `analyses/<analysis_id>/{input,output,logs}/` in the storage root."
    )


def _dag(model: Model, mode: Mode, analysis: ScheduledAnalysis | None, **kwargs: Any) -> DAG:
    """A model's DAG of ``mode``: triggered by hand, or a registry-declared scheduled analysis."""
    queue, title = model.queue(mode), mode.label
    dag_id, schedule, tags = model.dag_id(mode), None, ["oasis", mode.value, model.supplier_id, model.model_id]
    if analysis is not None:
        dag_id, tags = model.analysis_dag_id(analysis), [*tags, "scheduled"]
        asset = analysis.asset_uri(Storage(OasisConfig.from_env().storage_root).uri)
        schedule = [Asset(asset)] if asset else analysis.schedule
        title += f", scheduled analysis '{analysis.name}' ({asset or analysis.schedule})"
    return DAG(
        dag_id=dag_id,
        schedule=schedule,
        params=dag_params(_default_settings(model), analysis.params if analysis else None),
        # The pool: see oasis_ops.deploy.pools; a model on the KubernetesExecutor runs each task as a pod.
        default_args=DEFAULT_ARGS | {"queue": queue, "pool": queue} | executor_kwargs(model),
        tags=tags,
        doc_md=_doc(model, title, queue),
        catchup=False,
        **kwargs,
    )


def build_v1_dag(model: Model, analysis: ScheduledAnalysis | None = None) -> DAG:
    """v1, single server: one task runs the whole analysis on one worker."""
    with _dag(model, Mode.V1, analysis) as dag:
        OasisSingleServerOperator(model=model)
    return dag


def _label(**labels: str) -> None:
    """Name a mapped instance in the UI: the values its ``map_index_template`` renders."""
    cast("dict[str, Any]", get_current_context()).update(labels)


def build_v2_dag(model: Model, analysis: ScheduledAnalysis | None = None) -> DAG:
    """v2, distributed: prepare -> keys-lookup chunks -> input files (and the loss run folder) -> loss
    chunks -> output parts (one per summary set of each perspective, planned beside the chunks) -> aggregate
    (which removes the run's intermediate files; a failed run keeps them, so that clearing a task resumes it).

    Task bodies live in :mod:`oasis_ops.execution.distributed`, imported when a task runs, never at parse time.
    """

    def step(kind: TaskKind, **kwargs: Any) -> dict[str, Any]:
        """The task arguments of ``kind``: its id and its execution timeout (the model's or the default)."""
        return {"task_id": kind.value, "execution_timeout": model.timeout(kind), **kwargs}

    def v2() -> ModuleType:
        from oasis_ops.execution import distributed

        return distributed

    with _dag(
        model,
        Mode.V2,
        analysis,
        max_active_tasks=MAX_CHUNKS,  # Airflow's default (16) would cap the chunks running at once
    ) as dag:

        @task(**step(TaskKind.PREPARE))
        def prepare(**context: Any) -> list[dict[str, int]]:
            return run_task(v2().prepare, model, context)

        @task(**step(TaskKind.LOOKUP_CHUNK, map_index_template="keys chunk {{ chunk_label }}"))
        def lookup_chunk(chunk: dict[str, int], **context: Any) -> None:
            _label(chunk_label=v2().Chunk(**chunk).label)
            run_task(v2().lookup_chunk, model, context, v2().Chunk(**chunk))

        # runs after an empty (skipped) lookup too: action "run"
        @task(**step(TaskKind.WRITE_INPUT_FILES, trigger_rule="none_failed"))
        def write_input_files(lookup: list[dict[str, int]], **context: Any) -> list[dict[str, int]]:
            return run_task(v2().write_input_files, model, context, [v2().Chunk(**c) for c in lookup])

        @task(**step(TaskKind.PLAN_OUTPUTS))
        def plan_outputs(**context: Any) -> list[dict[str, Any]]:
            return run_task(v2().plan_outputs, model, context)

        @task(**step(TaskKind.LOSS_CHUNK, map_index_template="loss chunk {{ chunk_label }}"))
        def loss_chunk(chunk: dict[str, int], **context: Any) -> None:
            _label(chunk_label=v2().Chunk(**chunk).label)
            run_task(v2().loss_chunk, model, context, v2().Chunk(**chunk))

        @task(**step(TaskKind.OUTPUT_PART, map_index_template="outputs {{ part_label }}"))
        def output_part(part: dict[str, Any], losses: list[dict[str, int]], **context: Any) -> None:
            output = v2().OutputPart(**part)
            _label(part_label=output.label)
            run_task(v2().output_part, model, context, output, [v2().Chunk(**c) for c in losses])

        # runs after empty losses too: action "generate_inputs"
        @task(**step(TaskKind.AGGREGATE, trigger_rule="none_failed"))
        def aggregate(losses: list[dict[str, int]], parts: list[dict[str, Any]], **context: Any) -> dict[str, Any]:
            return run_task(v2().aggregate, model, context, [v2().Chunk(**c) for c in losses], [v2().OutputPart(**p) for p in parts])

        lookup = prepare()
        losses = write_input_files(lookup)
        lookup_chunk.expand(chunk=lookup) >> losses
        outputs = plan_outputs()
        losses >> outputs
        parts = output_part.partial(losses=losses).expand(part=outputs)
        done = aggregate(losses, outputs)
        loss_chunk.expand(chunk=losses) >> parts >> done
    return dag


class RegistryErrors(BaseTimetable):
    """Surfaces broken registry entries as an import error of the DAG file, with their reasons.

    Airflow calls ``validate()`` when it bags a DAG; raising there records an import error for the
    file while the file's other DAGs (the models that did load) still register.
    """

    can_be_scheduled = False

    def __init__(self, registry: Registry) -> None:
        self.message = f"Model registry {registry.path}: {len(registry.errors)} broken entr" + (
            "y" if len(registry.errors) == 1 else "ies"
        ) + "".join(f"\n- {error}" for error in registry.errors)

    def validate(self) -> None:
        raise AirflowTimetableInvalid(self.message)


def _without_unavailable_executors(registry: Registry) -> Registry:
    """Models naming an executor this Airflow does not run become registry errors, not a broken file."""
    from airflow.configuration import conf

    configured = {name.strip().split(".")[-1] for name in conf.get("core", "executor").split(",")}
    unavailable = [(m, m.executor) for m in registry.models if m.executor and m.executor not in configured]
    errors = tuple(
        RegistryError(m.key, f"executor {str(executor)!r} is not in [core] executor ({', '.join(sorted(configured))}); add it there")
        for m, executor in unavailable
    )
    dropped = {m.key for m, _ in unavailable}
    return replace(registry, models=tuple(m for m in registry.models if m.key not in dropped), errors=registry.errors + errors)


def build_dags(registry: Registry) -> dict[str, DAG]:
    registry = _without_unavailable_executors(registry)
    builders = {Mode.V1: build_v1_dag, Mode.V2: build_v2_dag}
    dags = {}
    for model in registry.models:
        for dag in (build_v1_dag(model), build_v2_dag(model)):
            dags[dag.dag_id] = dag
        for analysis in model.analyses:
            dag = builders[analysis.mode](model, analysis)
            dags[dag.dag_id] = dag
    if registry.errors:
        dags[REGISTRY_ERRORS_DAG_ID] = DAG(dag_id=REGISTRY_ERRORS_DAG_ID, schedule=RegistryErrors(registry))
    return dags


def register_dags(namespace: MutableMapping[str, Any]) -> None:
    """Put every model's DAGs into a DAG file's module namespace."""
    namespace.update(build_dags(load_registry(OasisConfig.from_env().registry_path)))
