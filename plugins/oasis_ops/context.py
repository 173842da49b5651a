"""What every task body works from: :class:`TaskRun`, built once per task instance from its Airflow context."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from oasis_ops.config import OasisConfig
from oasis_ops.params import RunRequest
from oasis_ops.registry import Model
from oasis_ops.storage import Owner, Storage


@dataclass(frozen=True)
class TaskRun:
    """The model, the run's checked request, the storage root, and the Airflow run id (which names
    the run's intermediate files). Task bodies see no Airflow context: v1 and v2 share every step."""

    model: Model
    request: RunRequest
    storage: Storage
    run_id: str

    @classmethod
    def of(cls, model: Model, context: Mapping[str, Any]) -> TaskRun:
        """Raises :class:`~oasis_ops.errors.OasisInputError` when the run's params are bad."""
        request = RunRequest.from_params(context["params"], context["run_id"])
        ti = context["ti"]  # recorded in the folders the task makes, for storage hygiene
        storage = Storage(OasisConfig.from_env().storage_root, Owner(ti.dag_id, ti.run_id, ti.task_id, ti.map_index))
        return cls(model, request, storage, context["run_id"])
