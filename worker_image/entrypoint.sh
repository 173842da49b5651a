#!/bin/bash
# The official Airflow image's convention, which docker-compose.yaml and the Kubernetes manifests rely
# on: arguments are an airflow command (`api-server`, `celery worker ...`), unless they start with a
# program run as it is (`airflow ...`, `python ...`, `bash ...`).
set -o errexit -o nounset -o pipefail

case "${1:-}" in
    airflow | python | python3 | bash | sh | pip) exec "$@" ;;
    *) exec airflow "$@" ;;
esac
