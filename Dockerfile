# eventctl as a container: non-root, listening on 0.0.0.0:8080, its SQLite file on the /data volume.
#
#   docker build -t eventctl .                          dependencies from the package index
#   pip wheel -w wheels . && \
#   docker build --build-arg WHEELS=wheels -t eventctl .   air-gapped: only the wheels in ./wheels, no network
#
# The wheels must be built for the Python of BASE (3.11 for the default). Any base with python3 and its venv
# module works: --build-arg BASE=<image>.
#
# Stop timeout: on SIGTERM eventctl drains for up to SHUTDOWN_TIMEOUT_S (default 10 s), then gives open
# connections up to 5 s before it exits 0. Docker's and Podman's default stop timeout is 10 s, after which they
# SIGKILL: run with `--stop-timeout 20` (compose: `stop_grace_period: 20s`), or SHUTDOWN_TIMEOUT_S + 10 if you
# raise it. The label below records that figure for tooling.
ARG BASE=python:3.11-slim

FROM ${BASE} AS build
# Empty: install from the package index. A directory of the build context: install only from its wheels.
ARG WHEELS=""
WORKDIR /src
RUN python3 -m venv /opt/eventctl
COPY pyproject.toml README.md ./
COPY eventctl ./eventctl
# pyproject.toml is listed so that the instruction has a source when WHEELS is empty; pip ignores it there.
COPY pyproject.toml ${WHEELS} /wheels/
RUN if [ -n "${WHEELS}" ]; then \
        /opt/eventctl/bin/pip install --no-cache-dir --no-index --find-links /wheels eventctl; \
    else \
        /opt/eventctl/bin/pip install --no-cache-dir .; \
    fi

FROM ${BASE}
LABEL org.opencontainers.image.title="eventctl" \
      org.opencontainers.image.description="Durable event ingestion over HTTP" \
      io.eventctl.stop-timeout="20"
RUN useradd --uid 10001 --user-group --home-dir /data --no-create-home --shell /usr/sbin/nologin eventctl \
    && mkdir /data \
    && chown eventctl:eventctl /data
COPY --from=build /opt/eventctl /opt/eventctl
ENV PATH=/opt/eventctl/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOST=0.0.0.0 \
    PORT=8080 \
    DATABASE_URL=sqlite:////data/eventctl.db
USER 10001:10001
WORKDIR /data
VOLUME /data
EXPOSE 8080
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["eventctl", "health", "--timeout", "2"]
CMD ["eventctl", "serve"]
