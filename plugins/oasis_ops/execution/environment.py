"""The process environment oasislmf needs, set explicitly before it is imported.

Called first by every task (:func:`oasis_ops.operators.run_task`) and by the tools that run
oasislmf outside a task (the image's warm-up); never as a side effect of an import.
"""

from __future__ import annotations

import os
import sys

from oasis_ops.config import OasisConfig


def prepare_environment() -> None:
    """``NUMBA_CACHE_DIR`` (read once, when numba is imported: compiled kernels must outlive the task,
    they take minutes to compile cold) and ``PATH`` (oasislmf's loss pipelines are shell scripts calling
    evepy, gulmc, fmpy ...: console scripts installed beside this interpreter, which an un-activated
    venv does not put on ``PATH``)."""
    os.environ.setdefault("NUMBA_CACHE_DIR", str(OasisConfig.from_env().numba_cache_dir))
    scripts = os.path.dirname(sys.executable)
    path = os.environ.get("PATH", "")
    if scripts not in path.split(os.pathsep):
        os.environ["PATH"] = scripts + os.pathsep + path
