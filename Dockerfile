# syntax=docker/dockerfile:1
# hpo's image: the CLI, the Celery worker, flower and optuna-dashboard, with no data inside.
# Built and run by docker-compose.yml (see docs/deploy.md); studies and datasets are mounted.
# /artifacts belongs to hpo: a named volume mounted there starts with that owner (workers write it).

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Dependencies first: the layer survives edits to the sources.
COPY pyproject.toml README.md ./
COPY engine ./engine
COPY hpo ./hpo
COPY workers ./workers
COPY migrations ./migrations
# flower is for the image only (the monitoring UI), not a dependency of the project. Version 2:
# basic auth from FLOWER_BASIC_AUTH, and no API without auth (docker-compose.yml sets it).
RUN pip install ".[dashboard]" "flower>=2"

FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONFAULTHANDLER=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MPLCONFIGDIR=/tmp/matplotlib \
    PATH=/opt/venv/bin:$PATH
RUN groupadd --system --gid 10001 hpo \
    && useradd --system --uid 10001 --gid hpo --home-dir /app --shell /usr/sbin/nologin hpo \
    && mkdir -p /app /data /artifacts \
    && chown hpo:hpo /app /artifacts
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
USER hpo:hpo
# Each service gives its own command (hpo worker, hpo db upgrade, celery ... flower, optuna-dashboard).
CMD ["hpo", "--help"]
