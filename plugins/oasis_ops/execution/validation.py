"""Checks run in a run's first task, before any heavy work: files, OED content, analysis settings.

Each failure is an :class:`OasisInputError` naming the run parameter, the file and the fix.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from airflow.sdk import ObjectStoragePath

from oasis_ops.errors import OasisInputError
from oasis_ops.params import EXPOSURE_FILES
from oasis_ops.registry import Model

FIELD_OF_ROLE = {role: name for name, role in EXPOSURE_FILES.items()}
PARQUET_MAGIC = b"PAR1"
SNIFF_BYTES = 64 * 1024


def check_exposure_file(path: ObjectStoragePath, field: str, label: str | None = None) -> None:
    """The file exists, is not empty, and is a CSV text or a parquet file as its name says.

    ``field`` names the parameter (or API resource) the file came from, ``label`` how to show the
    file in messages (default: its path).
    """
    shown = label or str(path)
    if not path.exists():
        raise OasisInputError(f"{field}: {shown} does not exist in the storage root")
    if not path.is_file():
        raise OasisInputError(f"{field}: {shown} is a folder, not a file")
    suffix = Path(label or path.name).suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise OasisInputError(f"{field}: {shown} must be an OED .csv or .parquet file")
    with path.open("rb") as handle:
        head = handle.read(SNIFF_BYTES)
    if not head:
        raise OasisInputError(f"{field}: {shown} is empty")
    if suffix == ".parquet":
        if not head.startswith(PARQUET_MAGIC):
            raise OasisInputError(f"{field}: {shown} is not a parquet file (no PAR1 header)")
    elif b"\x00" in head:
        raise OasisInputError(f"{field}: {shown} is a binary file, not CSV text")


def check_oed(exposure: Mapping[str, Path], names: Mapping[str, str]) -> int:
    """ods-tools' OED validation of the staged exposure files; ``names`` are the user's paths.

    Returns the number of location rows (what the keys lookup is split over).
    """
    from ods_tools.oed import OdsException, OedExposure

    try:
        oed = OedExposure(**{role: str(path) for role, path in exposure.items()}, check_oed=True)
    except (OdsException, ValueError, KeyError) as exc:
        files = ", ".join(f"{FIELD_OF_ROLE[role]}={names[role]!r}" for role in exposure)
        raise OasisInputError(f"OED validation failed for {files}:\n{exc}") from None
    return len(oed.location.dataframe) if oed.location is not None else 0


def check_analysis_settings(settings: Mapping[str, Any], model: Model) -> None:
    """ods-tools' analysis-settings schema plus the model's own settings, and the event set exists."""
    from ods_tools.oed import OdsException
    from ods_tools.oed.settings import AnalysisSettingHandler

    handler = AnalysisSettingHandler.make(model_setting_json=str(model.model_settings_path))
    try:
        handler.validate(dict(settings))
    except OdsException as exc:
        raise OasisInputError(f"analysis_settings: {exc}".replace("\n", " ")) from None
    event_set = model.model_settings().get("model_settings", {}).get("event_set", {})
    options = [str(o.get("id")) for o in event_set.get("options", [])]
    chosen = settings.get("model_settings", {}).get("event_set")
    if chosen is not None and options and str(chosen) not in options:
        raise OasisInputError(
            f"analysis_settings: model_settings.event_set {chosen!r} is not an event set of {model.key}; "
            f"choose one of {options}"
        )
