# Stand-in for the official redis image where Docker Hub cannot be reached (the tests): Redis 7 from
# Debian bookworm, started as the official image starts it (every interface, no protected mode, data in
# /data, no volume: docker-compose.yaml keeps no Redis data), with redis-cli on PATH for the health check.
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
SHELL ["/bin/bash", "-o", "pipefail", "-o", "errexit", "-c"]
RUN apt-get update \
    && apt-get install -y --no-install-recommends redis-server \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /data \
    && chown redis:redis /data
USER redis
WORKDIR /data
EXPOSE 6379
CMD ["redis-server", "--bind", "0.0.0.0", "--protected-mode", "no", "--dir", "/data"]
