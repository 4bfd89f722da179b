# One image for both services; docker-compose.yml picks the command.
FROM python:3.11-slim

# A fixed uid keeps volume ownership stable across rebuilds.
RUN groupadd --system --gid 10001 wq \
    && useradd --system --uid 10001 --gid wq --no-create-home --home-dir /app wq

WORKDIR /app

# Project metadata and packages first, so editing examples/ does not reinstall dependencies.
# README.md is copied because pyproject.toml names it as the package readme.
COPY pyproject.toml README.md ./
COPY common/ ./common/
COPY dispatcher/ ./dispatcher/
COPY executor/ ./executor/
RUN pip install --no-cache-dir .

COPY examples/ ./examples/

# /data is the dispatcher's volume: a fresh named volume copies this directory's owner,
# so the non-root user can write the SQLite store there.
RUN mkdir -p /data && chown wq:wq /data

ENV PYTHONUNBUFFERED=1 WQ_LOG_FORMAT=json
# Console scripts put their own bin/ on sys.path, not the working directory. The executor adds
# its --path (default .) itself; this covers any other importer of examples.tasks.
ENV PYTHONPATH=/app

# Numeric, so runtimes that enforce non-root (Kubernetes runAsNonRoot) can verify it.
USER 10001:10001

CMD ["executor", "--help"]
