"""Run parameters: the DAG ``params`` (the trigger form, validated by Airflow on every trigger) and
:class:`RunRequest`, the checked view of one run's parameters that tasks work from."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from airflow.sdk import Param

from oasis_ops.errors import OasisInputError
from oasis_ops.priority import DEFAULT_PRIORITY, HIGHEST_PRIORITY, LOWEST_PRIORITY, is_priority

GENERATE_AND_RUN = "generate_and_run"
GENERATE_INPUTS = "generate_inputs"
RUN = "run"
ACTIONS = (GENERATE_AND_RUN, GENERATE_INPUTS, RUN)

#: Run parameter -> the ``ods_tools`` / ``oasislmf`` name of the OED file it gives.
EXPOSURE_FILES = {
    "location_file": "location",
    "accounts_file": "account",
    "ri_info_file": "ri_info",
    "ri_scope_file": "ri_scope",
}
ANALYSIS_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"


def dag_params(
    default_settings: Mapping[str, Any] | None = None, fixed: Mapping[str, Any] | None = None
) -> dict[str, Param]:
    """The run parameters of a model's DAGs; ``default_settings`` pre-fills ``analysis_settings``,
    ``fixed`` (a scheduled analysis' parameters) sets the defaults of any parameter."""
    file_param = "OED {} file (CSV or parquet): a path relative to the storage root, or a URI inside it."
    params = {
        name: Param(None, type=["null", "string"], title=name.replace("_", " ").capitalize(), description=file_param.format(role))
        for name, role in EXPOSURE_FILES.items()
    }
    params["location_file"].description = file_param.format("location") + " Required unless action is 'run'."
    params.update(
        analysis_settings=Param(
            dict(default_settings) if default_settings else None,
            type=["null", "object"],
            title="Analysis settings",
            description="Oasis analysis settings (validated against ods-tools' schema and the model's settings). "
            "Required unless action is 'generate_inputs'.",
        ),
        analysis_id=Param(
            None,
            type=["null", "string"],
            pattern=ANALYSIS_ID_PATTERN,
            title="Analysis id",
            description="Names the folder analyses/<analysis_id>/ in the storage root; letters, digits, '_', '-', '.'. "
            "Default: derived from the run id. Action 'run' reuses the inputs generated earlier under the same id.",
        ),
        priority=Param(
            DEFAULT_PRIORITY,
            type="integer",
            minimum=LOWEST_PRIORITY,
            maximum=HIGHEST_PRIORITY,
            title="Priority",
            description="1 (lowest) to 10; 8-10 are reserved for administrators. Orders waiting tasks when workers are busy.",
        ),
        chunking=Param(
            None,
            type=["null", "object"],
            title="Chunking override (v2)",
            description="Fields of the model's chunking_configuration.json to override for this run, e.g. "
            '{"loss_strategy": "FIXED_CHUNKS", "fixed_analysis_chunks": 8}.',
        ),
        action=Param(GENERATE_AND_RUN, type="string", enum=list(ACTIONS), title="Action"),
    )
    for name, value in (fixed or {}).items():
        params[name] = Param(value, description=params[name].description, **params[name].schema)
    return params


def check_fixed_params(fixed: Mapping[str, Any], where: str) -> None:
    """Validate a scheduled analysis' parameters against the run parameters' schemas."""
    from airflow.sdk.definitions.param import ParamsDict
    from airflow.sdk.exceptions import ParamValidationError

    try:
        ParamsDict(dag_params(fixed=fixed)).validate()
    except ParamValidationError as exc:
        raise OasisInputError(f"{where}: {exc}") from None


def default_analysis_id(run_id: str) -> str:
    """A safe analysis id derived from an Airflow run id (``manual__2026-…+00:00`` has ':' and '+')."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", run_id).lstrip("_.-")
    return safe[:100] or "analysis"


def run_analysis_id(params: Mapping[str, Any], run_id: str) -> str:
    """The analysis a run works for (``analyses/<analysis_id>/``): its ``analysis_id``, else derived from the run id."""
    return params.get("analysis_id") or default_analysis_id(run_id)


@dataclass(frozen=True)
class RunRequest:
    """What one run was asked to do, with every parameter checked."""

    action: str
    analysis_id: str
    exposure: Mapping[str, str]
    analysis_settings: Mapping[str, Any] | None
    priority: int
    chunking: Mapping[str, Any] | None

    @property
    def generates_inputs(self) -> bool:
        return self.action in (GENERATE_AND_RUN, GENERATE_INPUTS)

    @property
    def runs_losses(self) -> bool:
        return self.action in (GENERATE_AND_RUN, RUN)

    @classmethod
    def from_params(cls, params: Mapping[str, Any], run_id: str) -> RunRequest:
        """Check the run's params again (a run created past Airflow's form may carry anything)."""
        action = params.get("action") or GENERATE_AND_RUN
        if action not in ACTIONS:
            raise OasisInputError(f"action: {action!r} is not one of {list(ACTIONS)}")
        analysis_id = run_analysis_id(params, run_id)
        if not isinstance(analysis_id, str) or not re.match(ANALYSIS_ID_PATTERN, analysis_id):
            raise OasisInputError(
                f"analysis_id: {analysis_id!r} is not a safe name; use 1-100 letters, digits, '_', '-' or '.', "
                "starting with a letter or digit"
            )
        priority = params.get("priority", DEFAULT_PRIORITY)
        if not is_priority(priority):
            raise OasisInputError(f"priority: {priority!r} is not an integer from {LOWEST_PRIORITY} to {HIGHEST_PRIORITY}")
        exposure = {}
        for name, role in EXPOSURE_FILES.items():
            value = params.get(name)
            if value in (None, ""):
                continue
            if not isinstance(value, str):
                raise OasisInputError(f"{name}: expected a path string, got {type(value).__name__}")
            exposure[role] = value
        settings = params.get("analysis_settings")
        if settings is not None and not isinstance(settings, Mapping):
            raise OasisInputError(f"analysis_settings: expected a JSON object, got {type(settings).__name__}")
        chunking = params.get("chunking")
        if chunking is not None and not isinstance(chunking, Mapping):
            raise OasisInputError(f"chunking: expected a JSON object, got {type(chunking).__name__}")
        request = cls(action, analysis_id, exposure, settings, priority, chunking)
        if request.generates_inputs and "location" not in exposure:
            raise OasisInputError(f"location_file: required for action {action!r} (give an OED location file)")
        if request.runs_losses and not settings:
            raise OasisInputError(f"analysis_settings: required for action {action!r}")
        if action == RUN and exposure:
            raise OasisInputError(
                f"{', '.join(n for n, r in EXPOSURE_FILES.items() if r in exposure)}: action 'run' reuses the inputs "
                "generated earlier for the analysis id; leave the exposure files empty or use 'generate_and_run'"
            )
        return request
