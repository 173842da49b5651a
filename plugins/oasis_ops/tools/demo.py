"""``make demo``: build the synthetic model, run a v1 analysis through Airflow, print a loss summary.

Runs on the embedded default (SQLite, LocalExecutor, nothing running beforehand) with the
project's own registry; the run goes through ``airflow dags test``, as a user would run it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import yaml

from oasis_ops.config import PROJECT_ROOT, OasisConfig
from oasis_ops.constants import Mode
from oasis_ops.deploy.pools import sync_pools
from oasis_ops.registry import load_registry
from oasis_ops.results.analysis import NAV_ROUTE, ui_run_path
from oasis_ops.storage import Storage
from oasis_ops.tools.summary import format_summary, summarise
from oasis_ops.tools.synthetic import SyntheticModelSpec, build_synthetic_model

DEFAULT_REGISTRY = PROJECT_ROOT / "models" / "registry.yaml"
ANALYSIS_ID = "demo"
#: Log lines worth showing while the run goes on; the full log is kept in a file.
PROGRESS_MARKERS = ("oasis_ops", "DagRun Finished", "AirflowFailException", "Error")
#: Airflow's log line at the end of the run, with its run id (the results page's address needs it).
FINISHED_RUN = re.compile(r"DagRun Finished: .*?run_id=([^,\s]+)")


def main() -> int:
    os.environ["OASIS_MODEL_REGISTRY"] = str(DEFAULT_REGISTRY)
    config = OasisConfig.from_env()
    registry = load_registry(DEFAULT_REGISTRY)
    entry = yaml.safe_load(DEFAULT_REGISTRY.read_text())["models"][0]
    model_root = (DEFAULT_REGISTRY.parent / entry["path"]).resolve()
    if not (model_root / "oasislmf.json").is_file():
        print(f"Building the synthetic model in {model_root} ...")
        build_synthetic_model(model_root, SyntheticModelSpec())
        registry = load_registry(DEFAULT_REGISTRY)
    if registry.errors:
        print("\n".join(map(str, registry.errors)), file=sys.stderr)
        return 1
    model = registry.models[0]
    sync_pools(registry)  # the model's pools, for the UI's scheduler (make ui) on the same set-up

    storage = Storage(config.storage_root)
    conf: dict[str, object] = {"analysis_id": ANALYSIS_ID}
    for name, param in (("location.csv", "location_file"), ("account.csv", "accounts_file")):
        target = storage.root / "exposure" / "synthetic" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes((model_root / "exposure" / name).read_bytes())
        conf[param] = f"exposure/synthetic/{name}"
    conf["analysis_settings"] = json.loads((model_root / "analysis_settings.json").read_text())

    dag_id = model.dag_id(Mode.V1)
    log_path = Path(os.environ.get("AIRFLOW_HOME", PROJECT_ROOT / ".airflow")) / "logs" / f"demo-{int(time.time())}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    print(f"Running {dag_id} (analysis {ANALYSIS_ID}) with airflow dags test; full log: {log_path}")
    started = time.monotonic()
    run_id = None
    airflow = Path(sys.executable).parent / "airflow"
    with log_path.open("w") as log, subprocess.Popen(
        [str(airflow), "dags", "test", dag_id, "-c", json.dumps(conf)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as process:
        for line in process.stdout or ():
            log.write(line)
            finished = FINISHED_RUN.search(line)
            run_id = finished.group(1) if finished else run_id
            if any(marker in line for marker in PROGRESS_MARKERS):
                print("  " + line.rstrip()[:200])
    if process.returncode != 0:
        print(f"The demo run failed; see {log_path}", file=sys.stderr)
        return process.returncode

    output = storage.analysis(ANALYSIS_ID).output
    print(f"\nDone in {time.monotonic() - started:.0f} s. Outputs: {output}")
    if storage.is_local:
        print(format_summary(summarise(storage.local_path(output))))
    ui = f"http://localhost:{os.environ.get('AIRFLOW__API__PORT', '8080')}"
    print(
        "\nSee it in the Airflow UI: run `make ui` (same set-up; user admin, password OASIS_ADMIN_PASSWORD or the one it\n"
        f"prints), then open\n  {ui}/plugin/{NAV_ROUTE}  (Oasis analyses: every analysis, newest first)"
    )
    if run_id:
        print(f"  {ui}{ui_run_path(dag_id, run_id)}  (this run's results: AAL, EP curves, downloads)")
    print("Trigger more runs from the DAG's page with the form; each run has an \"Oasis results\" tab.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
