"""What the test suite and the benchmarks share, written once: throw-away Airflow homes, Airflow
stacks as real processes (LocalExecutor, Celery), one REST client, PiWind's cases and the
comparisons of output folders.

It drives the product from outside only (its command-line modules, the ``airflow`` CLI, the REST
API) and imports none of it, so tests see what users and operators see. Importable from the
repository root: by ``python -m bench.bench``, and by the tests through ``pyproject.toml``'s pytest
``pythonpath``.
"""
