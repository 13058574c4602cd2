# eventctl as a container: non-root, listening on 0.0.0.0:8080, its SQLite file on the /data volume.
ARG BASE=python:3.11-slim

FROM ${BASE} AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY eventctl ./eventctl
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM ${BASE}
RUN useradd --create-home --uid 10001 eventctl && mkdir /data && chown eventctl /data
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels eventctl && rm -rf /wheels
USER eventctl
WORKDIR /data
ENV HOST=0.0.0.0 \
    PORT=8080 \
    DATABASE_URL=sqlite:////data/eventctl.db
VOLUME /data
EXPOSE 8080
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s CMD ["eventctl", "health", "--timeout", "2"]
CMD ["eventctl", "serve"]
