"""PiWind, Oasis' reference model, read where it lives (``PIWIND_ROOT``, default
``../shared/models/piwind``) and never copied into the project: its registry entry, its settings
files, its CI cases with their expected outputs, and a storage root holding its exposure files."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.airflow_home import REPO
from harness.registry import write_registry

PIWIND = Path(os.environ.get("PIWIND_ROOT", REPO.parent / "shared" / "models" / "piwind")).resolve()
#: PiWind's DAGs (the registry entry of :func:`piwind_entry`).
V1_DAG, V2_DAG = "oasislmf_piwind_1_v1", "oasislmf_piwind_1_v2"
#: Ten locations: a run takes seconds rather than minutes, and PiWind's expected outputs are for it.
LOCATIONS_10 = "exposure/SourceLocOEDPiWind10.csv"


def piwind_entry(**extra: Any) -> dict[str, Any]:
    """PiWind's registry entry (with ``extra`` fields, e.g. ``analyses``)."""
    return {"supplier_id": "OasisLMF", "model_id": "PiWind", "version_id": "1", "path": str(PIWIND), **extra}


def piwind_settings(name: str) -> dict[str, Any]:
    """One of PiWind's ``analysis_settings/*.json``."""
    return json.loads((PIWIND / "analysis_settings" / name).read_text())


def require_piwind() -> Path:
    """PiWind's root; :class:`FileNotFoundError` saying how to point at it when it is not there."""
    if not PIWIND.is_dir():
        raise FileNotFoundError(f"PiWind is not at {PIWIND}; set PIWIND_ROOT")
    return PIWIND


def piwind_workspace(base: Path, **entry: Any) -> tuple[Path, Path]:
    """``base/storage``, a storage root holding copies of PiWind's exposure files under ``exposure/``,
    and ``base/registry.yaml`` naming PiWind (with ``entry``'s extra fields)."""
    require_piwind()
    storage = base / "storage"
    shutil.copytree(PIWIND / "exposure", storage / "exposure")
    return storage, write_registry(base / "registry.yaml", piwind_entry(**entry))


@dataclass(frozen=True)
class PiWindCase:
    """One of PiWind's CI cases: a settings file, the exposure files (run parameter -> storage path)
    it reads, and its expected outputs in ``expected/<name>/``."""

    name: str
    settings_file: str
    files: Mapping[str, str]

    @property
    def expected(self) -> Path:
        return PIWIND / "expected" / self.name

    def settings(self) -> dict[str, Any]:
        return piwind_settings(self.settings_file)

    def conf(self, analysis_id: str | None = None, **extra: Any) -> dict[str, Any]:
        """A run's conf for the case: its files and settings, ``analysis_id`` and ``extra`` parameters."""
        conf: dict[str, Any] = {**self.files, "analysis_settings": self.settings()}
        if analysis_id is not None:
            conf["analysis_id"] = analysis_id
        return conf | extra


RI_FILES = {
    "location_file": LOCATIONS_10,
    "accounts_file": "exposure/SourceAccOEDPiWind.csv",
    "ri_info_file": "exposure/SourceReinsInfoOEDPiWind.csv",
    "ri_scope_file": "exposure/SourceReinsScopeOEDPiWind.csv",
}
CASES = {
    case.name: case
    for case in (
        PiWindCase("control_set", "RI_analysis_settings.json", RI_FILES),
        PiWindCase("case_0", "GUL_analysis_settings.json", {"location_file": LOCATIONS_10}),
        PiWindCase("case_1", "FM_analysis_settings.json", {"location_file": LOCATIONS_10, "accounts_file": RI_FILES["accounts_file"]}),
    )
}
