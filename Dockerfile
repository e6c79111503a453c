# raincheck serving image. CPU by default; for CUDA build with
#   docker build --build-arg BASE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04 --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128 .
ARG BASE=python:3.11-slim-bookworm
FROM ${BASE}

ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    RAINCHECK_DATA_ROOT=/data

RUN apt-get update && apt-get install -y --no-install-recommends make fonts-dejavu-core curl \
    && (command -v python3.11 || apt-get install -y --no-install-recommends python3.11 python3.11-venv) \
    && rm -rf /var/lib/apt/lists/*

RUN useradd --create-home --uid 1000 raincheck && mkdir -p /data /app && chown raincheck /data /app
WORKDIR /app
COPY --chown=raincheck . /app
USER raincheck

# The same virtual environment the README's `make serve` builds; torch from the chosen index.
RUN python3.11 -m venv .venv \
    && .venv/bin/pip install --extra-index-url ${TORCH_INDEX} torch==2.13.0 \
    && .venv/bin/pip install -e . && touch .venv/.installed

VOLUME ["/data"]
EXPOSE 5006
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s \
    CMD curl -fsS http://127.0.0.1:5006/health || exit 1
# Exposing the server beyond localhost needs --address and --allow-websocket-origin (see README).
# Give the login at run time: docker run -e RAINCHECK_BASIC_AUTH=... -p 5006:5006 raincheck
CMD ["make", "serve", "SERVE_ARGS=--address 0.0.0.0 --allow-websocket-origin '*'"]
