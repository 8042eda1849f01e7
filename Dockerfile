# wheelmeld as a container: non-root, cache on a volume, health-checked.
# Build elsewhere (no Docker engine on this project's development machines): docker compose up --build
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    WHEELMELD_HOST=0.0.0.0 \
    WHEELMELD_PORT=8000 \
    WHEELMELD_CACHE_DIR=/cache

WORKDIR /src
COPY pyproject.toml README.md ./
COPY proxy ./proxy
RUN python -m pip install . && rm -rf /src \
    && useradd --system --uid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin wheelmeld \
    && mkdir -p /cache && chown wheelmeld /cache

USER wheelmeld
VOLUME ["/cache"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]
ENTRYPOINT ["wheelmeld"]
CMD ["serve"]
