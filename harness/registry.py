"""Model registries for throw-away Airflow homes and stacks."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml


def write_registry(path: Path, *entries: Mapping[str, Any]) -> Path:
    """A registry file (``models:`` list, as ``OASIS_MODEL_REGISTRY`` names) holding ``entries``; returns ``path``."""
    path.write_text(yaml.safe_dump({"models": [dict(entry) for entry in entries]}))
    return path
