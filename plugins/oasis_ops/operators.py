"""Operators: the Airflow face of :mod:`oasis_ops.execution`. They read the run's params into a typed
:class:`TaskRun`, run the task body under the task-process discipline, and turn bad input into a
failure without retries (retrying cannot mend it)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from oasis_ops.constants import Mode, TaskKind
from oasis_ops.context import TaskRun
from oasis_ops.errors import OasisInputError
from oasis_ops.registry import Model

if TYPE_CHECKING:
    from airflow.sdk import Context

T = TypeVar("T")
log = logging.getLogger(__name__)


def run_task(body: Callable[..., T], model: Model, context: Mapping[str, Any], *args: Any) -> T:
    """Run a task body (a function of :mod:`oasis_ops.execution`) as ``body(TaskRun, *args)``.

    The process environment is prepared before oasislmf is imported, and the processes the body
    starts are watched and stopped with it (:mod:`oasis_ops.execution.processes`). Bad input fails
    the task without retries.
    """
    from oasis_ops.execution.environment import prepare_environment
    from oasis_ops.execution.processes import task_processes

    prepare_environment()
    run: TaskRun | None = None
    try:
        run = TaskRun.of(model, context)
        with task_processes():
            return body(run, *args)
    except BaseException as exc:
        if run is not None:
            _report_failure(run, context, exc)
        if isinstance(exc, OasisInputError):
            raise AirflowFailException(str(exc)) from None
        raise


def _report_failure(run: TaskRun, context: Mapping[str, Any], exc: BaseException) -> None:
    """Write the failure of this task instance where the Oasis API's traceback files read it."""
    import traceback

    ti = context["ti"]
    report = (
        f"Task {ti.task_id}{f' (chunk {ti.map_index + 1})' if ti.map_index >= 0 else ''}, try {ti.try_number}, "
        f"of DAG run {run.run_id} ({context['dag'].dag_id}) failed:\n{type(exc).__name__}: {exc}\n\n"
        + "".join(traceback.format_exception(exc))
    )
    try:
        target = run.storage.analysis(run.request.analysis_id).error_report(run.run_id, ti.task_id, ti.map_index)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(report)
    except OSError as error:  # the report must not hide the failure it reports
        log.warning("Could not write the error report of %s: %s", ti.task_id, error)


class OasisSingleServerOperator(BaseOperator):
    """v1: a whole analysis (file preparation, then losses generation) on one worker, all its cores.

    Runs on the model's v1 queue ``<supplier>-<model>-<version>``; v1 workers take one job at a time.
    """

    ui_color = "#cfe8fc"

    def __init__(self, *, model: Model, **kwargs: Any) -> None:
        kwargs.setdefault("task_id", TaskKind.RUN_ANALYSIS.value)
        kwargs.setdefault("queue", model.queue(Mode.V1))
        kwargs.setdefault("pool", model.queue(Mode.V1))
        kwargs.setdefault("execution_timeout", model.timeout(TaskKind.RUN_ANALYSIS))
        super().__init__(**kwargs)
        self.model = model

    def execute(self, context: Context) -> dict[str, Any]:
        from oasis_ops.execution.single_server import run_single_server

        return run_task(run_single_server, self.model, context)

    def on_kill(self) -> None:
        """Airflow stops the task (run marked failed, timeout): stop its pipelines with it."""
        from oasis_ops.execution.processes import terminate_descendants

        terminate_descendants()
