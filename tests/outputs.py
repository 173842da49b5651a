"""Compare Oasis output folders the way PiWind's own CI does."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

SD_PREFIXES = ("sd", "standarddeviation")


def assert_outputs_match(expected: Path, actual: Path) -> list[str]:
    """Every expected file: pandas reads both, lower-cased columns, exact equality except the
    standard-deviation columns of ELT/PLT files (rtol 0.01). ``analysis_settings.json`` aside."""
    compared = []
    for exp in sorted(expected.iterdir()):
        if exp.name == "analysis_settings.json":
            continue
        reader = pd.read_parquet if exp.suffix == ".parquet" else pd.read_csv
        want, got = reader(exp), reader(actual / exp.name)
        want.columns, got.columns = want.columns.str.lower(), got.columns.str.lower()
        loose = [c for c in want.columns if c.startswith(SD_PREFIXES) and ("elt" in exp.name or "plt" in exp.name)]
        pd.testing.assert_frame_equal(want.drop(columns=loose), got.drop(columns=loose), check_exact=True, obj=exp.name)
        for column in loose:
            np.testing.assert_allclose(got[column], want[column], rtol=0.01, err_msg=f"{exp.name}:{column}")
        compared.append(exp.name)
    return compared


def assert_same_files(expected: Path, actual: Path, ignore: tuple[str, ...] = ()) -> list[str]:
    """The two folders hold the same files (relative paths) with the same bytes; returns the names."""
    def files(folder: Path) -> dict[str, Path]:
        return {p.relative_to(folder).as_posix(): p for p in sorted(folder.rglob("*")) if p.is_file() and p.name not in ignore}

    want, got = files(expected), files(actual)
    assert sorted(want) == sorted(got), f"{expected} vs {actual}: different files"
    different = [name for name in want if want[name].read_bytes() != got[name].read_bytes()]
    assert not different, f"{actual} differs from {expected} in {different}"
    return sorted(want)
