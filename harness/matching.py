"""Matching a failure's message in full: a test that names a reason must fail when the product
fails for another one, so partial matches (``"location_file: "``) are not enough."""

from __future__ import annotations

import re


def exactly(message: str) -> str:
    """A ``pytest.raises(match=...)`` pattern that matches ``message`` and nothing more."""
    return f"^{re.escape(message)}$"
