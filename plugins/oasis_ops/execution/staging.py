"""Every run's first step, shared by v1 and v2: all the cheap checks, then the run's files copied
from the storage root into a private work folder. Heavy checks (ods-tools) load here, in tasks only."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from oasis_ops.chunking import ChunkingConfig
from oasis_ops.errors import OasisInputError
from oasis_ops.execution.validation import FIELD_OF_ROLE, check_analysis_settings, check_exposure_file, check_oed
from oasis_ops.params import RunRequest
from oasis_ops.registry import Model
from oasis_ops.storage import AnalysisLocation, Storage


@dataclass(frozen=True)
class StagedRun:
    """A checked run with its files in a local work folder."""

    request: RunRequest
    analysis: AnalysisLocation
    chunking: ChunkingConfig
    #: OED role -> local copy of the exposure file (empty for action ``run``).
    exposure: dict[str, Path]
    settings_path: Path | None
    #: Rows of the location file (0 for action ``run``).
    locations: int


def stage_run(model: Model, request: RunRequest, storage: Storage, work: Path) -> StagedRun:
    """Check the run's conf, files and settings, cheapest first, and copy its files into ``work``.

    Raises :class:`OasisInputError` before any heavy work when anything is wrong.
    """
    chunking = model.chunking.override(request.chunking, "chunking")
    if request.analysis_settings:
        check_analysis_settings(request.analysis_settings, model)
    sources = {role: storage.resolve(path, FIELD_OF_ROLE[role]) for role, path in request.exposure.items()}
    for role, source in sources.items():
        check_exposure_file(source, FIELD_OF_ROLE[role])
    analysis = storage.analysis(request.analysis_id)
    if not request.generates_inputs and not analysis.input.exists():
        raise OasisInputError(
            f"analysis_id: no inputs were generated for {request.analysis_id!r} (expected {analysis.input}); "
            "run action 'generate_inputs' or 'generate_and_run' first"
        )
    exposure = {role: storage.fetch(src, work / "exposure" / role / src.name) for role, src in sources.items()}
    locations = check_oed(exposure, request.exposure) if exposure else 0
    return StagedRun(request, analysis, chunking, exposure, write_settings(request, work), locations)


def write_settings(request: RunRequest, work: Path) -> Path | None:
    """The run's analysis settings as the JSON file oasislmf reads (``None`` if it has none).

    Keys sorted: the conf's key order depends on where the run came from (PostgreSQL stores it as
    JSONB, which reorders keys), and the file is copied into ``output/``, which must not depend on it.
    """
    if not request.analysis_settings:
        return None
    path = work / "analysis_settings.json"
    path.write_text(json.dumps(request.analysis_settings, indent=2, sort_keys=True))
    return path


def local_exposure(folder: Path) -> dict[str, Path]:
    """OED role -> file of a staged ``exposure/<role>/<file>`` folder."""
    return {role.name: next(role.iterdir()) for role in sorted(folder.iterdir())}
