"""The storage root: every file a run reads or writes lives under it.

The root is a local folder or an Airflow object-storage URI (``s3://bucket/prefix``, ``gs://…``,
any fsspec protocol Airflow knows). User-given paths are confined to it; results are published
atomically: they are written next to their destination first and swapped in only once complete.

Working folders record who made them (``.owner.json``): a v2 run's intermediate folder its DAG run, a
scratch folder its task instance. Storage hygiene (:mod:`oasis_ops.hygiene`) asks Airflow about them
before removing what ended runs and killed tasks left behind.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath

from airflow.sdk import ObjectStoragePath

from oasis_ops.errors import OasisInputError
from oasis_ops.params import default_analysis_id

log = logging.getLogger(__name__)
LOCAL_PROTOCOLS = ("", "file", "local")
#: v2 runs' intermediate files: ``<root>/.intermediate/<analysis_id>/<run>/`` (see :meth:`Storage.intermediate`).
INTERMEDIATE = ".intermediate"
#: Tasks' scratch folders on a local root: ``<root>/.work/<name>-<random>/``.
SCRATCH = ".work"
#: The owner record in a working folder.
OWNER_FILE = ".owner.json"


@dataclass(frozen=True)
class Owner:
    """Whose working folder it is: a DAG run (intermediate files), or one of its task instances (scratch)."""

    dag_id: str
    run_id: str
    task_id: str = ""
    map_index: int = -1

    @property
    def run(self) -> Owner:
        """The DAG run alone: what owns a run's intermediate files, whichever task wrote them first."""
        return Owner(self.dag_id, self.run_id)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def read(cls, folder: Path | ObjectStoragePath) -> Owner | None:
        """The folder's owner record; None without one (folders of earlier versions) or when unreadable."""
        try:
            return cls(**json.loads((folder / OWNER_FILE).read_text()))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError) as exc:
            log.warning("Unreadable owner record in %s: %s", folder, exc)
            return None


@dataclass(frozen=True)
class AnalysisLocation:
    """Where one analysis keeps its files, under ``analyses/<analysis_id>/``."""

    base: ObjectStoragePath

    @property
    def input(self) -> ObjectStoragePath:
        return self.base / "input"

    @property
    def output(self) -> ObjectStoragePath:
        return self.base / "output"

    @property
    def logs(self) -> ObjectStoragePath:
        return self.base / "logs"

    def errors(self, run_id: str) -> ObjectStoragePath:
        """The failed tasks' error reports of one DAG run (``<task>[-<map index>].txt``), for the
        Oasis API's traceback files: not results, so written as they happen."""
        return self.base / "errors" / re.sub(r"[^A-Za-z0-9_.-]", "_", run_id)

    def error_report(self, run_id: str, task_id: str, map_index: int = -1) -> ObjectStoragePath:
        """The error report of one failed task instance (a mapped one's names its chunk)."""
        return self.errors(run_id) / (f"{task_id}-{map_index}.txt" if map_index >= 0 else f"{task_id}.txt")


def _move(source: ObjectStoragePath, target: ObjectStoragePath) -> None:
    """Rename a file or folder: a rename on local disks, a copy and delete on object stores."""
    source.fs.mv(source.path, target.path, recursive=True)


class Storage:
    """A storage root (local path or object-storage URI) and the only way tasks touch files in it.

    :param root: a local path or an object-storage URI.
    :param owner: the task instance using it (tasks only): recorded in the working folders it makes.
    """

    def __init__(self, root: str, owner: Owner | None = None) -> None:
        if "://" not in root:
            root = "file://" + os.path.abspath(root)
        self.root = ObjectStoragePath(root.rstrip("/"))
        self.is_local = self.root.protocol in LOCAL_PROTOCOLS
        self.owner = owner

    def __repr__(self) -> str:
        return f"Storage({self.uri!r})"

    @property
    def uri(self) -> str:
        return str(self.root).rstrip("/")

    def analysis(self, analysis_id: str) -> AnalysisLocation:
        return AnalysisLocation(self.root / "analyses" / analysis_id)

    def resolve(self, user_path: str, field: str) -> ObjectStoragePath:
        """The storage path a user gave in ``field``: relative to the root, or an absolute path or URI inside it."""
        text = str(user_path).strip()
        outside = OasisInputError(
            f"{field}: {user_path!r} is outside the storage root {self.uri}; give a path relative to it"
        )
        if "://" in text:
            if text != self.uri and not text.startswith(self.uri + "/"):
                raise outside
            text = text[len(self.uri) :]
        elif text.startswith("/"):
            if not self.is_local or not (text + "/").startswith(self.root.path.rstrip("/") + "/"):
                raise outside
            text = text[len(self.root.path.rstrip("/")) :]
        parts = [p for p in PurePosixPath(text).parts if p not in ("/", ".")]
        if not parts:
            raise OasisInputError(f"{field}: {user_path!r} names the storage root itself, not a file in it")
        if ".." in parts:
            raise outside
        target = self.root.joinpath(*parts)
        if self.is_local:
            real_root = os.path.realpath(self.root.path)
            if os.path.commonpath([real_root, os.path.realpath(target.path)]) != real_root:
                raise OasisInputError(f"{field}: {user_path!r} links outside the storage root {self.uri}")
        return target

    def intermediate(self, analysis_id: str, run_id: str) -> ObjectStoragePath:
        """One v2 run's intermediate folder, ``.intermediate/<analysis_id>/<run id made safe>/``."""
        return self.root / INTERMEDIATE / analysis_id / default_analysis_id(run_id)

    def intermediate_folders(self) -> list[ObjectStoragePath]:
        """Every run's intermediate folder; those removed while listing are left out. (A missing folder
        is a NotADirectoryError to universal-pathlib: a new storage root has no ``.intermediate/``.)"""
        folders: list[ObjectStoragePath] = []
        base = self.root / INTERMEDIATE
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            for analysis in list(base.iterdir()):
                with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                    folders.extend(run for run in analysis.iterdir() if run.is_dir())
        return folders

    def remove_intermediates(self, folder: ObjectStoragePath) -> int | None:
        """Remove a run's intermediate folder, then its analysis' folder once no run has one (a new run
        may be filling it); the bytes freed, None if it was not there. The one way they go: after a
        success, on cancel, and by storage hygiene."""
        freed = None
        if folder.exists():
            freed = int(folder.fs.du(folder.path, total=True))
            folder.fs.rm(folder.path, recursive=True)
        with contextlib.suppress(OSError):
            if folder.parent.exists() and not any(folder.parent.iterdir()):
                folder.parent.rmdir()
        return freed

    def scratch_folders(self) -> list[Path]:
        """The tasks' scratch folders under ``.work/`` (elsewhere than on a local root they are temp
        folders of the worker's machine, beyond the storage root's reach)."""
        if not self.is_local:
            return []
        with contextlib.suppress(FileNotFoundError):
            return [folder for folder in (Path(self.root.path) / SCRATCH).iterdir() if folder.is_dir()]
        return []

    def local_path(self, path: ObjectStoragePath) -> Path:
        """The local filesystem path of ``path``, for a local root only."""
        assert self.is_local, "only a local storage root has local paths"
        return Path(path.path)

    @contextmanager
    def scratch(self, name: str) -> Iterator[Path]:
        """A private local working folder, removed afterwards (by storage hygiene if the task is killed).

        For a local root it lives under ``<root>/.work/`` so that publishing is a rename on the same
        filesystem and nothing is written outside the root; for object storage it is a temp folder.
        """
        if self.is_local:
            parent = Path(self.root.path) / SCRATCH
            parent.mkdir(parents=True, exist_ok=True)
            folder = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=parent))
        else:
            folder = Path(tempfile.mkdtemp(prefix=f"oasis-{name}-"))
        try:
            if self.owner is not None:
                (folder / OWNER_FILE).write_text(self.owner.to_json())
            yield folder
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def fetch(self, source: ObjectStoragePath, dest: Path) -> Path:
        """Copy a file or folder from storage to the local ``dest`` (which must not exist yet)."""
        if self.is_local:
            src = Path(source.path)
            if src.is_dir():
                shutil.copytree(src, dest)
            else:
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dest)
            return dest
        if source.is_dir():
            for item in source.rglob("*"):
                if item.is_file():
                    target = dest / str(item.relative_to(source))
                    target.parent.mkdir(parents=True, exist_ok=True)
                    item.copy(ObjectStoragePath("file://" + str(target)))
        else:
            dest.parent.mkdir(parents=True, exist_ok=True)
            source.copy(ObjectStoragePath("file://" + str(dest)))
        return dest

    @contextmanager
    def published_on_exit(self, local_dir: Path, dest: ObjectStoragePath) -> Iterator[None]:
        """Publish ``local_dir`` (if the body made it) to ``dest`` when the body ends, failed or not:
        the loss pipelines' logs are most wanted after a failure."""
        try:
            yield
        except BaseException:
            if local_dir.is_dir():
                self.publish(local_dir, dest)
                log.error("The step failed; its logs are in %s", dest)
            raise
        if local_dir.is_dir():
            self.publish(local_dir, dest)

    def publish(self, local_dir: Path, dest: ObjectStoragePath, keep: bool = False) -> None:
        """Make ``local_dir`` the content of ``dest``, replacing what was there, all or nothing.

        The folder is staged next to ``dest`` and renamed into place; earlier content is moved
        aside first and removed only after the swap. On object stores a rename is a copy, so the
        swap itself is not atomic there, but a half-uploaded folder is never published. A task's first
        publication into a run's intermediate folder records the DAG run owning it. With ``keep``,
        ``local_dir`` stays for the task's next step (a local root publishes hard links to its files
        then, instead of moving them: later steps must only read them).
        """
        self._record_run_owner(dest)
        token = uuid.uuid4().hex[:8]
        staged = dest.parent / f".{dest.name}.partial-{token}"
        retired = dest.parent / f".{dest.name}.replaced-{token}"
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            if self.is_local and keep:
                shutil.copytree(local_dir, staged.path, copy_function=os.link)
            elif self.is_local:
                shutil.move(str(local_dir), staged.path)
            else:
                for item in sorted(local_dir.rglob("*")):
                    if item.is_file():
                        ObjectStoragePath("file://" + str(item)).copy(staged / item.relative_to(local_dir).as_posix())
            if dest.exists():
                _move(dest, retired)
            _move(staged, dest)
        except BaseException:
            if retired.exists() and not dest.exists():
                _move(retired, dest)
            raise
        finally:
            for leftover in (staged, retired):
                if leftover.exists():
                    leftover.fs.rm(leftover.path, recursive=True)

    def _record_run_owner(self, dest: ObjectStoragePath) -> None:
        """Before a task first publishes into a run's intermediate folder, record the DAG run owning it."""
        if self.owner is None:
            return
        parts = PurePosixPath(dest.path).parts
        root = PurePosixPath(self.root.path).parts
        if len(parts) < len(root) + 4 or parts[: len(root)] != root or parts[len(root)] != INTERMEDIATE:
            return
        folder = self.root.joinpath(*parts[len(root) : len(root) + 3])
        if not (folder / OWNER_FILE).exists():
            folder.mkdir(parents=True, exist_ok=True)
            (folder / OWNER_FILE).write_text(self.owner.run.to_json())
