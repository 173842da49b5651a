"""The model registry: which Oasis models this deployment serves, read from a YAML file.

Loaded at DAG parse time, so it reads only small YAML/JSON files. A broken entry becomes a
:class:`RegistryError` and never stops the other models from loading.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml

from oasis_ops.chunking import ChunkingConfig
from oasis_ops.constants import DEFAULT_WORKER_IMAGE, Executor, Mode, TaskKind, slug
from oasis_ops.errors import OasisInputError
from oasis_ops.params import check_fixed_params, dag_params
from oasis_ops.scaling import ScalingConfig
from oasis_ops.schedules import ScheduledAnalysis

REQUIRED_KEYS = ("supplier_id", "model_id", "version_id", "path")
OPTIONAL_KEYS = ("analyses", "executor", "worker_image", "execution_timeout_minutes")


@dataclass(frozen=True)
class Model:
    """One registered model: its identity, its root folder and its meta-data."""

    supplier_id: str
    model_id: str
    version_id: str
    root: Path
    #: ``oasislmf.json`` as written (paths relative to ``root``); see ``steps.model_kwargs``.
    oasislmf_config: Mapping[str, Any]
    chunking: ChunkingConfig = field(default_factory=ChunkingConfig)
    scaling: ScalingConfig = field(default_factory=ScalingConfig)
    #: Registry-declared analyses that run by themselves (see ``schedules``).
    analyses: tuple[ScheduledAnalysis, ...] = field(default=())
    #: The executor of the model's tasks (None: the default one, i.e. Celery workers on its queues).
    executor: Executor | None = None
    #: The model worker image (``worker_image/``) that runs its tasks on Kubernetes.
    worker_image: str = DEFAULT_WORKER_IMAGE
    #: Task kind -> execution timeout, where the registry overrides :attr:`TaskKind.default_timeout`.
    timeouts: Mapping[TaskKind, timedelta] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.supplier_id}/{self.model_id}/{self.version_id}"

    def queue(self, mode: Mode) -> str:
        """The Celery queue of ``mode``'s workers, as in the Oasis platform: ``<supplier>-<model>-<version>``,
        and the same with ``-v2`` for v2."""
        return f"{self.supplier_id}-{self.model_id}-{self.version_id}{mode.queue_suffix}"

    def worker_concurrency(self, mode: Mode) -> int:
        """Tasks one worker of ``mode`` runs at once: a v1 task uses every core, so one; v2 chunks use one each."""
        return 1 if mode is Mode.V1 else self.scaling.v2_worker_concurrency

    def pool_slots(self, mode: Mode) -> int:
        """Slots of ``mode``'s pool (named as its queue): what the model's workers run at once, at most."""
        return max(self.scaling.most_workers, 1) * self.worker_concurrency(mode)

    def worker_name(self, mode: Mode) -> str:
        """The queue as a service or Kubernetes name (``OasisLMF-PiWind-1-v2`` -> ``oasislmf-piwind-1-v2``)."""
        return slug(self.queue(mode), "-")

    def dag_id(self, mode: Mode) -> str:
        """``<supplier>_<model>_<version>_<mode>``, lower-cased, non-alphanumerics as ``_``."""
        return slug(f"{self.supplier_id}_{self.model_id}_{self.version_id}_{mode.value}", "_")

    def analysis_dag_id(self, analysis: ScheduledAnalysis) -> str:
        """A scheduled analysis' own DAG: ``<the model's DAG id of its mode>__<name>``."""
        return f"{self.dag_id(analysis.mode)}__{analysis.name}"

    def dags(self) -> dict[str, tuple[Mode, ScheduledAnalysis | None]]:
        """Every DAG id of the model -> its mode and, for a scheduled analysis' DAG, the analysis."""
        dags: dict[str, tuple[Mode, ScheduledAnalysis | None]] = {self.dag_id(mode): (mode, None) for mode in Mode}
        return dags | {self.analysis_dag_id(analysis): (analysis.mode, analysis) for analysis in self.analyses}

    def timeout(self, kind: TaskKind) -> timedelta:
        return self.timeouts.get(kind, kind.default_timeout)

    @property
    def runs_on_kubernetes(self) -> bool:
        return self.executor is Executor.KUBERNETES

    @property
    def model_settings_path(self) -> Path:
        return self.root / "meta-data" / "model_settings.json"

    def model_settings(self) -> dict[str, Any]:
        return json.loads(self.model_settings_path.read_text())


@dataclass(frozen=True)
class RegistryError:
    """A registry entry that could not be loaded, and why."""

    entry: str
    reason: str

    def __str__(self) -> str:
        return f"{self.entry}: {self.reason}"


@dataclass(frozen=True)
class Registry:
    path: Path
    models: tuple[Model, ...]
    errors: tuple[RegistryError, ...]

    def get(self, key: str) -> Model:
        for model in self.models:
            if model.key == key:
                return model
        raise KeyError(f"model {key!r} is not in the registry {self.path}")

    def dag(self, dag_id: str) -> tuple[Model, Mode, ScheduledAnalysis | None] | None:
        """The model, mode and scheduled analysis (None for a model's own DAGs) of one of the registry's
        DAGs; None for any other DAG."""
        for model in self.models:
            found = model.dags().get(dag_id)
            if found is not None:
                return model, *found
        return None


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise OasisInputError(f"{path} is missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise OasisInputError(f"{path} is not valid JSON: {exc}") from None


def load_model(entry: Mapping[str, Any], base_dir: Path) -> Model:
    """Build a :class:`Model` from one registry entry; ``path`` is relative to ``base_dir``."""
    if not isinstance(entry, Mapping):
        raise OasisInputError(f"an entry must be a mapping with {list(REQUIRED_KEYS)}, got {entry!r}")
    missing = [k for k in REQUIRED_KEYS if entry.get(k) in (None, "")]
    if missing:
        raise OasisInputError(f"missing field(s) {missing}")
    root = (base_dir / str(entry["path"])).resolve()
    if not root.is_dir():
        raise OasisInputError(f"path {entry['path']!r} is not a folder (resolved to {root})")
    oasislmf_config = _read_json(root / "oasislmf.json")
    if not isinstance(oasislmf_config, dict):
        raise OasisInputError(f"{root / 'oasislmf.json'} must hold a JSON object")
    meta = root / "meta-data"
    if not (meta / "model_settings.json").is_file():
        raise OasisInputError(f"{meta / 'model_settings.json'} is missing")
    chunking, scaling = meta / "chunking_configuration.json", meta / "scaling_configuration.json"
    analyses = entry.get("analyses") or []
    if not isinstance(analyses, list):
        raise OasisInputError("analyses must be a list")
    known_params = set(dag_params())
    analyses = [ScheduledAnalysis.parse(analysis, known_params) for analysis in analyses]
    for analysis in analyses:
        check_fixed_params(analysis.params, f"analyses[{analysis.name!r}]")
    names = [analysis.name for analysis in analyses]
    if len(set(names)) != len(names):
        raise OasisInputError(f"analyses: names must be unique, got {names}")
    unknown = sorted(set(entry) - set(REQUIRED_KEYS) - set(OPTIONAL_KEYS))
    if unknown:
        raise OasisInputError(f"unknown field(s) {unknown}; known fields: {[*REQUIRED_KEYS, *OPTIONAL_KEYS]}")
    executor = entry.get("executor")
    if executor is not None and executor not in {e.value for e in Executor}:
        raise OasisInputError(f"executor must be one of {[e.value for e in Executor]} or absent, got {executor!r}")
    return Model(
        supplier_id=str(entry["supplier_id"]),
        model_id=str(entry["model_id"]),
        version_id=str(entry["version_id"]),
        root=root,
        oasislmf_config=oasislmf_config,
        chunking=ChunkingConfig().override(_read_json(chunking), str(chunking)) if chunking.is_file() else ChunkingConfig(),
        scaling=ScalingConfig().override(_read_json(scaling), str(scaling)) if scaling.is_file() else ScalingConfig(),
        analyses=tuple(analyses),
        executor=Executor(executor) if executor else None,
        worker_image=str(entry.get("worker_image") or DEFAULT_WORKER_IMAGE),
        timeouts=_timeouts(entry.get("execution_timeout_minutes")),
    )


def _timeouts(minutes: Any) -> dict[TaskKind, timedelta]:
    """``execution_timeout_minutes: {loss_chunk: 600, ...}``: task kind -> minutes (a number > 0)."""
    if minutes is None:
        return {}
    kinds = [kind.value for kind in TaskKind]
    if not isinstance(minutes, Mapping):
        raise OasisInputError(f"execution_timeout_minutes must map task kinds {kinds} to minutes, got {minutes!r}")
    timeouts = {}
    for name, value in minutes.items():
        if name not in kinds:
            raise OasisInputError(f"execution_timeout_minutes: {name!r} is not a task kind; use one of {kinds}")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise OasisInputError(f"execution_timeout_minutes.{name} must be a number of minutes > 0, got {value!r}")
        timeouts[TaskKind(name)] = timedelta(minutes=value)
    return timeouts


def load_registry(path: Path) -> Registry:
    """Read the registry file; a file that cannot be read at all is one error for the whole registry."""
    try:
        document = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        return Registry(path, (), (RegistryError(str(path), f"cannot read the model registry: {exc}"),))
    entries = document.get("models") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        return Registry(path, (), (RegistryError(str(path), "expected a top-level 'models:' list"),))
    models: list[Model] = []
    errors: list[RegistryError] = []
    #: Every name a model's DAGs, queues, pools and workers take (both modes), lower-cased as the
    #: slugs are -> the entry that took it: two models must not share one.
    taken: dict[str, str] = {}
    for index, entry in enumerate(entries):
        name = f"{path} models[{index}]"
        if isinstance(entry, Mapping) and all(entry.get(k) for k in REQUIRED_KEYS[:3]):
            name += f" ({entry['supplier_id']}/{entry['model_id']}/{entry['version_id']})"
        try:
            model = load_model(entry, path.parent)
        except OasisInputError as exc:
            errors.append(RegistryError(name, str(exc)))
            continue
        names = {label: slug(label, "_") for mode in Mode for label in (model.dag_id(mode), model.queue(mode))}
        clash = next(((label, taken[key]) for label, key in names.items() if key in taken), None)
        if clash:
            errors.append(RegistryError(name, f"its DAG id or queue {clash[0]} is already taken by {clash[1]}; give it distinct ids"))
            continue
        taken.update(dict.fromkeys(names.values(), name))
        models.append(model)
    return Registry(path, tuple(models), tuple(errors))
