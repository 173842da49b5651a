"""Oasis catastrophe loss models as Airflow DAGs.

The package is importable from DAG files (Airflow puts ``plugins/`` on ``sys.path``); modules that
import oasislmf, pandas or numba are only imported inside tasks, never at DAG parse time.
"""
