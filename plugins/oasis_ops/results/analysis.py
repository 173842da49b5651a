"""What the results pages show of an analysis: its status, chunk progress and failures as its DAG
run tells them (:mod:`oasis_ops.api.status`), its files in the storage root (:mod:`oasis_ops.storage`)
and its figures (:mod:`.reader`). The pages and ``GET …/summary`` are built from here only."""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from oasis_ops.api.records import AnalysisRecord, records
from oasis_ops.api.status import GENERATING, RUNNING, AnalysisStatus, DagRunAnalysis, RunView, SubTaskStatus, dag_run_analyses
from oasis_ops.constants import Mode, TaskKind
from oasis_ops.registry import Registry
from oasis_ops.storage import AnalysisLocation, Storage

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

#: Where the results pages live on the api-server (the Oasis API app is mounted at ``/oasis``).
RESULTS_PATH = "/oasis/results"
#: The UI's routes of the plugin's external views: the nav page, and the tab on every DAG run.
NAV_ROUTE = "oasis-analyses"
RUN_TAB_ROUTE = "oasis-results"
#: Input files offered on their own besides the input tar.gz.
KEYS_ERRORS = "keys-errors.csv"
#: How a failed task's error report (``operators._report_failure``) begins its traceback.
TRACEBACK_START = "\n\nTraceback (most recent call last):"


def run_path(dag_id: str, run_id: str) -> str:
    """The results page of a DAG run (what the ``dag_run`` external view's href makes of the ids)."""
    return f"{RESULTS_PATH}/dags/{urllib.parse.quote(dag_id, safe='')}/runs/{urllib.parse.quote(run_id, safe='')}/"


def airflow_run_path(dag_id: str, run_id: str) -> str:
    return f"/dags/{urllib.parse.quote(dag_id, safe='')}/runs/{urllib.parse.quote(run_id, safe='')}"


def ui_run_path(dag_id: str, run_id: str) -> str:
    """The results page as the UI shows it: the DAG run's "Oasis results" tab."""
    return f"{airflow_run_path(dag_id, run_id)}/plugin/{RUN_TAB_ROUTE}"


@dataclass(frozen=True)
class Failure:
    """A failed task instance, with the message of its error report when it wrote one."""

    task_id: str
    map_index: int
    try_number: int
    message: str
    report: str | None
    log_href: str

    @property
    def chunk(self) -> int | None:
        return self.map_index + 1 if self.map_index >= 0 else None


def failures(analysis: DagRunAnalysis, state: RunView, location: AnalysisLocation) -> list[Failure]:
    found = []
    for task_id, map_index, try_number in state.failures:
        path = location.error_report(analysis.run_id, task_id, map_index)
        report = path.read_text() if path.exists() else None
        if report is None:
            message = "It failed without an error report: it was stopped, timed out or its worker was lost; see its log."
        else:
            message = report.split("\n", 1)[-1].split(TRACEBACK_START, 1)[0].strip()
        log = airflow_run_path(analysis.dag_id, analysis.run_id) + f"/tasks/{urllib.parse.quote(task_id, safe='')}"
        found.append(Failure(task_id, map_index, try_number, message, report, log + (f"/mapped/{map_index}" if map_index >= 0 else "")))
    return sorted(found, key=lambda f: (f.task_id, f.map_index))


@dataclass(frozen=True)
class Download:
    label: str
    #: Relative to the run's results page.
    href: str


def downloads(location: AnalysisLocation) -> list[Download]:
    """What the analysis has in the storage root now: outputs (all, and each file), inputs, keys errors, logs."""
    found = []
    if location.output.exists():
        found.append(Download("All outputs (output.tar.gz)", "download/output.tar.gz"))
        found += [Download(name, f"download/output/{urllib.parse.quote(name)}") for name in _names(location.output)]
    if location.input.exists():
        found.append(Download("Input files (input.tar.gz)", "download/input.tar.gz"))
        if (location.input / KEYS_ERRORS).exists():
            found.append(Download(f"Keys errors ({KEYS_ERRORS})", f"download/{KEYS_ERRORS}"))
    if location.logs.exists():
        found.append(Download("Loss pipeline logs (logs.tar.gz)", "download/logs.tar.gz"))
    return found


def _names(folder: ObjectStoragePath) -> list[str]:
    return sorted(str(item.relative_to(folder)) for item in folder.rglob("*") if item.is_file())


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value else None


def _duration(state: RunView) -> float | None:
    if state.started is None:
        return None
    return ((state.finished or datetime.now(UTC)) - state.started).total_seconds()


def portfolio(analysis: DagRunAnalysis) -> str:
    """The API analysis' portfolio, or the run's location file."""
    if analysis.record is not None:
        return _portfolio(analysis.record)
    return str(analysis.params.get("location_file") or "(inputs of an earlier run)")


def _portfolio(record: AnalysisRecord) -> str:
    portfolio = records().portfolio(record.portfolio_id)
    return f"{portfolio.name} (portfolio {portfolio.id})" if portfolio else f"portfolio {record.portfolio_id}"


def describe(analysis: DagRunAnalysis, state: RunView) -> dict[str, Any]:
    """The analysis and this run of it, as the list and the page head show them."""
    record = analysis.record
    return {
        "analysis_id": analysis.analysis_id,
        "name": record.name if record else analysis.analysis_id,
        "api_analysis": {"id": record.id, "href": f"/oasis/{analysis.mode}/analyses/{record.id}/"} if record else None,
        "model": analysis.model.key,
        "portfolio": portfolio(analysis),
        "mode": analysis.mode,
        "mode_label": analysis.mode.label,
        "action": analysis.action,
        "dag_id": analysis.dag_id,
        "run_id": analysis.run_id,
        "status": state.status,
        "running": state.status in GENERATING | RUNNING,
        "started": _iso(state.started),
        "finished": _iso(state.finished),
        "duration_seconds": _duration(state),
        "results_href": run_path(analysis.dag_id, analysis.run_id),
        "ui_href": ui_run_path(analysis.dag_id, analysis.run_id),
        "airflow_href": airflow_run_path(analysis.dag_id, analysis.run_id),
    }


def summary(analysis: DagRunAnalysis, storage: Storage) -> dict[str, Any]:
    """Everything the results page shows of one DAG run's analysis (``GET …/summary``)."""
    from oasis_ops.results.reader import read_results

    state = analysis.view()
    location = storage.analysis(analysis.analysis_id)
    settings = analysis.params.get("analysis_settings")
    results = read_results(location.output, settings if isinstance(settings, dict) else None)
    lookup, losses = state.chunks(TaskKind.LOOKUP_CHUNK), state.chunks(TaskKind.LOSS_CHUNK)
    tasks = [t for t in state.sub_tasks if t.slug != "record-results"]
    note = None
    if results.files and state.status is not AnalysisStatus.RUN_COMPLETED:
        note = f"These outputs were published by an earlier run of analysis {analysis.analysis_id}: this run has not produced any."
    return {
        "analysis": describe(analysis, state),
        "progress": {
            "keys_chunks": {"done": lookup[0], "total": lookup[1]},
            "loss_chunks": {"done": losses[0], "total": losses[1]},
            "tasks": {"done": sum(t.status is SubTaskStatus.COMPLETED for t in tasks), "total": len(tasks)},
        },
        "failures": [asdict(f) | {"chunk": f.chunk} for f in failures(analysis, state, location)],
        "downloads": [asdict(d) for d in downloads(location)],
        "results": results.to_json(),
        "results_note": note,
    }


@dataclass(frozen=True)
class AnalysisRow:
    """One analysis in the list: its newest DAG run, or an API analysis that never ran."""

    created: datetime
    fields: dict[str, Any]


def analysis_rows(registry: Registry, can_read: Callable[[str], bool]) -> list[dict[str, Any]]:
    """Every analysis of the DAGs ``can_read`` allows (by DAG id), newest first: the analyses of the
    registry's DAG runs (by analysis id, their newest run telling the status), and the Oasis API's
    analyses that never ran (readable when both of their model's DAGs are)."""
    rows: list[AnalysisRow] = []
    seen: set[str] = set()
    for analysis in dag_run_analyses(registry):  # newest first: the first run of an analysis id is its newest
        if analysis.analysis_id in seen or not can_read(analysis.dag_id):
            continue
        seen.add(analysis.analysis_id)
        rows.append(AnalysisRow(analysis.created, describe(analysis, analysis.view())))
    keys = [(m.supplier_id, m.model_id, m.version_id) for m in registry.models]
    models = {record.id: registry.get(record.key) for record in records().sync_models(keys)}
    for record in records().list_analyses():
        model = models.get(record.model_id)
        if record.runs or record.storage_id in seen or model is None or not all(can_read(model.dag_id(mode)) for mode in Mode):
            continue
        created = record.created if record.created.tzinfo else record.created.replace(tzinfo=UTC)  # SQLite drops the zone
        rows.append(AnalysisRow(created, _never_ran(record, model.key)))
    return [row.fields for row in sorted(rows, key=lambda r: r.created, reverse=True)]


def _never_ran(record: AnalysisRecord, model: str) -> dict[str, Any]:
    return {
        "analysis_id": record.storage_id,
        "name": record.name,
        "api_analysis": {"id": record.id, "href": f"/oasis/{Mode.V2}/analyses/{record.id}/"},
        "model": model,
        "portfolio": _portfolio(record),
        "mode": None,
        "mode_label": "",
        "status": AnalysisStatus.NEW,
        "running": False,
        "started": None,
        "finished": None,
        "duration_seconds": None,
        "results_href": None,
        "ui_href": None,
        "airflow_href": None,
    }
