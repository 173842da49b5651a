"""The harness's own oracles: the end-to-end and stack tests are only as strict as these comparisons
and waits, so each must fail when what it checks is not so."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from harness.outputs import assert_no_results, assert_same_analysis, assert_same_files
from harness.polling import poll_until


def folder(base: Path, files: dict[str, bytes]) -> Path:
    for name, content in files.items():
        (base / name).parent.mkdir(parents=True, exist_ok=True)
        (base / name).write_bytes(content)
    return base


def test_same_files_returns_the_names_compared(tmp_path):
    files = {"a.csv": b"1", "sub/b.bin": b"\x00\x01"}
    assert assert_same_files(folder(tmp_path / "x", files), folder(tmp_path / "y", files)) == ["a.csv", "sub/b.bin"]


@pytest.mark.parametrize(
    "actual, failure",
    [
        ({"a.csv": b"1", "sub/b.bin": b"\x00\x02"}, r"differs from .* in \['sub/b.bin'\]"),
        ({"a.csv": b"1"}, "different files"),
        ({"a.csv": b"1", "sub/b.bin": b"\x00\x01", "extra.csv": b""}, "different files"),
    ],
    ids=["one byte", "a file missing", "a file more"],
)
def test_same_files_fails_on_any_difference(tmp_path, actual, failure):
    expected = folder(tmp_path / "x", {"a.csv": b"1", "sub/b.bin": b"\x00\x01"})
    with pytest.raises(AssertionError, match=failure):
        assert_same_files(expected, folder(tmp_path / "y", actual))


def test_two_empty_or_missing_folders_are_not_the_same_outputs(tmp_path):
    """A run that published nothing must not equal another that published nothing."""
    (tmp_path / "x").mkdir()
    (tmp_path / "y").mkdir()
    with pytest.raises(AssertionError, match="holds no files"):
        assert_same_files(tmp_path / "x", tmp_path / "y")
    with pytest.raises(AssertionError, match="holds no files"):
        assert_same_files(tmp_path / "missing", tmp_path / "missing-too")


def test_same_analysis_ignores_only_the_inputs_scratch_files(tmp_path):
    v1 = folder(tmp_path / "v1", {"output/gul.csv": b"1", "input/items.bin": b"i", "input/exposure_info.json": b"/tmp/a"})
    v2 = folder(tmp_path / "v2", {"output/gul.csv": b"1", "input/items.bin": b"i", "input/exposure_info.json": b"/tmp/b"})
    assert_same_analysis(v1, v2)
    (v2 / "input" / "items.bin").write_bytes(b"j")
    with pytest.raises(AssertionError, match=r"in \['items.bin'\]"):
        assert_same_analysis(v1, v2)


def test_poll_until_returns_the_first_truthy_value_and_gives_up_at_its_deadline():
    answers = iter([None, [], ["ready"]])
    assert poll_until(lambda: next(answers), 5, "never", interval=0) == ["ready"]
    started = time.monotonic()
    with pytest.raises(TimeoutError, match=r"^after 0 s: still waiting for x$"):
        poll_until(lambda: None, 0.2, lambda: "still waiting for x", interval=0.05)
    assert time.monotonic() - started < 5


def test_no_results_allows_only_the_error_reports(tmp_path):
    analysis = folder(tmp_path / "a", {"errors/manual__1/prepare.txt": b"OasisInputError: bad"})
    assert assert_no_results(analysis) == {"manual__1/prepare.txt": "OasisInputError: bad"}
    assert assert_no_results(tmp_path / "never-created") == {}
    folder(analysis, {"input/items.bin": b"i"})
    with pytest.raises(AssertionError, match=r"a failed run published \['input/items.bin'\]"):
        assert_no_results(analysis)
