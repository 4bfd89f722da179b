# One image for both services; the command picks one (docker-compose.yml):
#   dispatcher serve | executor run --tasks MODULE | dispatcher submit ... | python -m examples.demo
FROM python:3.11-slim-bookworm

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# A fixed uid keeps volume ownership stable across rebuilds.
RUN groupadd --system --gid 10001 wq \
    && useradd --system --uid 10001 --gid wq --no-create-home --home-dir /app wq

WORKDIR /app

# Exact versions from the lock first (scripts/lock-requirements), so a rebuild installs the same
# dependencies, and editing the code does not reinstall them.
COPY requirements.lock ./
RUN pip install --no-deps --requirement requirements.lock

# The project itself, without resolving anything again. README.md is the package readme. Built
# outside /app and removed after: the installed package is the only copy, so nothing in the
# working directory can shadow it.
COPY pyproject.toml README.md /tmp/wq-src/
COPY common/ /tmp/wq-src/common/
COPY dispatcher/ /tmp/wq-src/dispatcher/
COPY executor/ /tmp/wq-src/executor/
RUN pip install --no-deps /tmp/wq-src && rm -rf /tmp/wq-src && pip check

# Task modules are not part of the package: `--tasks examples.tasks` imports them from the
# working directory, which executor run (--path, default .) and WQ_DISPATCHER_TASKS search
# first, and so does `python -m examples.demo`.
COPY examples/ ./examples/

# /data is the dispatcher's volume: a fresh named volume copies this directory's owner,
# so the non-root user can write the SQLite store there.
RUN mkdir -p /data && chown wq:wq /data

ENV WQ_LOG_FORMAT=json \
    WQ_DISPATCHER_READY_FILE=/tmp/wq-ready \
    WQ_EXECUTOR_READY_FILE=/tmp/wq-ready

# The HTTP API of dispatcher serve (WQ_DISPATCHER_HTTP_PORT; set WQ_DISPATCHER_HTTP_HOST=0.0.0.0
# and a token to reach it from outside the container).
EXPOSE 8080

# Numeric, so runtimes that enforce non-root (Kubernetes runAsNonRoot) can verify it.
USER 10001:10001

# dispatcher serve and executor run keep this file only while they consume their queue, so the
# check fails while the broker is away. One-shot commands (submit, status, the demo) never
# write it: run them with --no-healthcheck (compose: `healthcheck: disable: true`).
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["test", "-f", "/tmp/wq-ready"]

# Exec form: the service is PID 1 and receives SIGTERM itself (graceful shutdown).
CMD ["executor", "--help"]
