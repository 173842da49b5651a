"""Thin wrappers around oasislmf's computation steps, shared by the v1 and v2 DAGs.

Only tasks import this module (oasislmf pulls in numba and pandas). The model's ``oasislmf.json``
gives the step arguments; its relative paths are resolved against the model root, as oasislmf's
CLI resolves them against the config file's folder.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from oasis_ops.config import OasisConfig

# Before numba is imported: compiled kernels must outlive the task (minutes to compile cold).
os.environ.setdefault("NUMBA_CACHE_DIR", str(OasisConfig.from_env().numba_cache_dir))
# oasislmf's loss pipelines are shell scripts calling evepy, gulmc, fmpy, ...: the console scripts
# installed beside this interpreter, which an un-activated venv does not put on PATH.
_SCRIPTS = os.path.dirname(sys.executable)
if _SCRIPTS not in os.environ.get("PATH", "").split(os.pathsep):
    os.environ["PATH"] = _SCRIPTS + os.pathsep + os.environ.get("PATH", "")

from oasislmf.manager import OasisManager  # noqa: E402
from oasislmf.utils.inputs import update_config  # noqa: E402

from oasis_ops.registry import Model  # noqa: E402

#: OED role (``ods_tools`` name) -> oasislmf argument.
EXPOSURE_ARGS = {
    "location": "oed_location_csv",
    "account": "oed_accounts_csv",
    "ri_info": "oed_info_csv",
    "ri_scope": "oed_scope_csv",
}


def _path_params() -> set[str]:
    return {p["name"] for p in OasisManager.run_model.get_params() if p.get("is_path")}


def model_kwargs(model: Model) -> dict[str, Any]:
    """The model's ``oasislmf.json`` as step arguments, relative paths made absolute."""
    config = update_config(dict(model.oasislmf_config))
    paths = _path_params()
    return {
        key: str(model.root / value) if key in paths and isinstance(value, str) and not os.path.isabs(value) else value
        for key, value in config.items()
    }


def exposure_kwargs(exposure: Mapping[str, Path]) -> dict[str, str]:
    return {EXPOSURE_ARGS[role]: str(path) for role, path in exposure.items()}


def generate_files(
    model: Model,
    exposure: Mapping[str, Path],
    analysis_settings: Path | None,
    target: Path,
    **extra: Any,
) -> Path:
    """File preparation: OED exposure + the model's keys lookup -> Oasis input files in ``target``."""
    kwargs = model_kwargs(model) | exposure_kwargs(exposure) | extra
    if analysis_settings is not None:
        kwargs["analysis_settings_json"] = str(analysis_settings)
    OasisManager().generate_files(oasis_files_dir=str(target), **kwargs)
    return target


def generate_losses(
    model: Model,
    inputs: Path,
    analysis_settings: Path,
    run_dir: Path,
    **extra: Any,
) -> Path:
    """Losses generation on this machine, one pipeline per core; returns the output folder."""
    OasisManager().generate_losses(
        **model_kwargs(model),
        oasis_files_dir=str(inputs),
        analysis_settings_json=str(analysis_settings),
        model_run_dir=str(run_dir),
        **extra,
    )
    return run_dir / "output"
