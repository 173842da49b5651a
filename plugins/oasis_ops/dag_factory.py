"""One DAG per registered model and mode, built from the registry at parse time.

Parse-time cost is the registry's small YAML/JSON files: operators import oasislmf only when they run.
"""

from __future__ import annotations

import json
from collections.abc import MutableMapping
from datetime import timedelta
from typing import Any

from airflow.sdk import DAG
from airflow.sdk.bases.timetable import BaseTimetable
from airflow.sdk.exceptions import AirflowTimetableInvalid

from oasis_ops.config import OasisConfig
from oasis_ops.operators import OasisSingleServerOperator
from oasis_ops.params import dag_params
from oasis_ops.registry import Model, Registry, load_registry

#: The Oasis platform retries any failed task twice, 6 s apart.
DEFAULT_ARGS = {"retries": 2, "retry_delay": timedelta(seconds=6), "owner": "oasis"}
REGISTRY_ERRORS_DAG_ID = "oasis_model_registry_errors"


def _default_settings(model: Model) -> dict[str, Any] | None:
    """The model's own ``analysis_settings.json``, if it ships one, pre-fills the trigger form."""
    path = model.root / "analysis_settings.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _doc(model: Model, mode: str, queue: str) -> str:
    return (
        f"**{model.key}**, {mode}: file preparation (OED exposure + keys lookup -> Oasis input files), then "
        f"losses generation (ELT/PLT/ALT/EPT).\n\nModel root: `{model.root}`. Queue: `{queue}`. "
        "Results: `analyses/<analysis_id>/{input,output,logs}/` in the storage root."
    )


def build_v1_dag(model: Model) -> DAG:
    """v1, single server: one task runs the whole analysis on one worker."""
    with DAG(
        dag_id=model.dag_id("v1"),
        schedule=None,
        params=dag_params(_default_settings(model)),
        default_args=DEFAULT_ARGS,
        tags=["oasis", "v1", model.supplier_id, model.model_id],
        doc_md=_doc(model, "v1 (single server)", model.queue),
        catchup=False,
    ) as dag:
        OasisSingleServerOperator(task_id="run_analysis", model=model)
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


def build_dags(registry: Registry) -> dict[str, DAG]:
    dags = {dag.dag_id: dag for dag in (build_v1_dag(model) for model in registry.models)}
    if registry.errors:
        dags[REGISTRY_ERRORS_DAG_ID] = DAG(dag_id=REGISTRY_ERRORS_DAG_ID, schedule=RegistryErrors(registry))
    return dags


def register_dags(namespace: MutableMapping[str, Any]) -> None:
    """Put every model's DAGs into a DAG file's module namespace."""
    namespace.update(build_dags(load_registry(OasisConfig.from_env().registry_path)))
