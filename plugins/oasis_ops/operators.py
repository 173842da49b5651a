"""Operators: the Airflow face of ``tasks``; they read the run's params and turn bad input into a
failure without retries (retrying cannot mend it)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from oasis_ops.config import OasisConfig
from oasis_ops.errors import OasisInputError
from oasis_ops.params import RunRequest
from oasis_ops.registry import Model
from oasis_ops.storage import Storage

T = TypeVar("T")


def run_task(function: Callable[..., T], model: Model, context: Any, *args: Any) -> T:
    """Call a task function with the run's checked request and storage; bad input fails the task
    without retries (retrying cannot mend it)."""
    try:
        request = RunRequest.from_params(context["params"], context["run_id"])
        storage = Storage(OasisConfig.from_env().storage_root)
        return function(model, request, storage, context["run_id"], *args)
    except OasisInputError as exc:
        raise AirflowFailException(str(exc)) from None


class OasisSingleServerOperator(BaseOperator):
    """v1: a whole analysis (file preparation, then losses generation) on one worker, all its cores.

    Runs on the model's v1 queue ``<supplier>-<model>-<version>``; v1 workers take one job at a time.
    """

    ui_color = "#cfe8fc"

    def __init__(self, *, model: Model, **kwargs: Any) -> None:
        kwargs.setdefault("queue", model.queue)
        kwargs.setdefault("pool", model.queue)
        super().__init__(**kwargs)
        self.model = model

    def execute(self, context: Any) -> dict[str, Any]:
        from oasis_ops.tasks import run_single_server

        return run_task(lambda model, request, storage, _run_id: run_single_server(model, request, storage), self.model, context)
