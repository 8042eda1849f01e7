# wheelmeld as a container: non-root, cache on a volume, health-checked, configuration mounted.
# Built elsewhere (no Docker engine on this project's development machines): docker compose up --build
# tests/unit/test_container.py checks what can be checked without Docker: this file's instructions,
# and that its entrypoint and health check work with the environment set here.

# Stage 1: build the wheel (the build backend stays out of the final image).
FROM python:3.12-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY proxy ./proxy
RUN python -m pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

# Stage 2: the runtime, with wheelmeld and its dependencies only.
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    WHEELMELD_HOST=0.0.0.0 \
    WHEELMELD_PORT=8000 \
    WHEELMELD_CACHE_DIR=/cache \
    WHEELMELD_LOG_FORMAT=json

# Optional extras, comma-separated: the fleet profile of docker-compose.yml builds with
# EXTRAS=s3,coordination (the S3 client and the Redis/Valkey client); the default image has neither.
ARG EXTRAS=""
COPY --from=build /wheels /tmp/wheels
RUN python -m pip install "$(echo /tmp/wheels/*.whl)${EXTRAS:+[$EXTRAS]}" && rm -rf /tmp/wheels \
    && useradd --system --uid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin wheelmeld \
    && mkdir -p /cache /etc/wheelmeld && chown wheelmeld /cache

# A named volume starts as a copy of this directory, ownership included: writable by the user below.
VOLUME ["/cache"]
USER 10001
EXPOSE 8000
# /healthz stays open when access control is on; the probe follows WHEELMELD_PORT, so change the port
# with that variable (a `serve --port N` flag wins over it, and then the probe needs WHEELMELD_PORT=N too).
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('WHEELMELD_PORT', '8000'), timeout=2)"]
ENTRYPOINT ["wheelmeld"]
CMD ["serve"]
