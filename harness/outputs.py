"""Comparisons of Oasis output folders: with PiWind's expected outputs the way PiWind's own CI
does, and byte for byte between two runs (v1 and v2 must agree exactly)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

#: Standard-deviation columns of ELT/PLT files: sampled, so compared at rtol 0.01 as PiWind's CI does.
SD_PREFIXES = ("sd", "standarddeviation")
#: Input files that record the scratch folder they were written in, so differ between any two runs.
INPUT_SCRATCH_FILES = ("exposure_info.json", "ri_layers.json")


def assert_outputs_match(expected: Path, actual: Path) -> list[str]:
    """Every expected file: pandas reads both, lower-cased columns, exact equality except the
    standard-deviation columns of ELT/PLT files (rtol 0.01). ``analysis_settings.json`` aside.
    Returns the names compared."""
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
    assert compared, f"{expected} holds no expected outputs"
    return compared


def assert_same_files(expected: Path, actual: Path, ignore: tuple[str, ...] = ()) -> list[str]:
    """The two folders hold the same files (relative paths) with the same bytes; returns the names."""

    def files(folder: Path) -> dict[str, Path]:
        return {p.relative_to(folder).as_posix(): p for p in sorted(folder.rglob("*")) if p.is_file() and p.name not in ignore}

    want, got = files(expected), files(actual)
    assert sorted(want) == sorted(got), f"{expected} vs {actual}: different files"
    assert want, f"{expected} holds no files"
    different = [name for name in want if want[name].read_bytes() != got[name].read_bytes()]
    assert not different, f"{actual} differs from {expected} in {different}"
    return sorted(want)


def assert_same_analysis(expected: Path, actual: Path) -> None:
    """Two analyses (``analyses/<id>/`` folders) have byte-identical outputs, and inputs but for
    :data:`INPUT_SCRATCH_FILES`."""
    assert_same_files(expected / "output", actual / "output")
    assert_same_files(expected / "input", actual / "input", ignore=INPUT_SCRATCH_FILES)


def assert_no_results(analysis: Path) -> dict[str, str]:
    """A failed run published no results: ``analyses/<id>/`` holds nothing but the error reports the
    failed tasks write for the Oasis API (``errors/<run>/<task>[-<map index>].txt``). Returns them,
    path relative to ``errors/`` -> text, so that the caller can check which tasks failed and why."""
    files = {p.relative_to(analysis): p for p in sorted(analysis.rglob("*")) if p.is_file()} if analysis.exists() else {}
    results = [path.as_posix() for path in files if path.parts[0] != "errors"]
    assert not results, f"a failed run published {results}"
    return {path.relative_to("errors").as_posix(): file.read_text() for path, file in files.items()}
