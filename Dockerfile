# The pipeline's one image; docker-compose.yml runs it as worker, ingest, sink, sender, console, topics and migrate.
#   docker build -t whatsup-pipeline:local .
#   docker run --rm whatsup-pipeline:local --help

# The console page's libraries from npm, pinned by web/package-lock.json (deploy/web-assets.sh does the same).
FROM node:20-slim AS assets
WORKDIR /src
COPY web/package.json web/package-lock.json ./web/
RUN npm ci --prefix web --no-audit --no-fund \
    && mkdir -p vendor/images \
    && cp web/node_modules/leaflet/dist/leaflet.js web/node_modules/leaflet/dist/leaflet.css vendor/ \
    && cp web/node_modules/leaflet/dist/images/*.png vendor/images/ \
    && cp web/node_modules/h3-js/dist/h3-js.umd.js vendor/ \
    && cp web/node_modules/leaflet/LICENSE vendor/LICENSE.leaflet \
    && cp web/node_modules/h3-js/LICENSE vendor/LICENSE.h3-js

# Build wheels for the project and every dependency, so the runtime stage needs no compiler.
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY base ./base
COPY streams ./streams
COPY schemas ./schemas
COPY sinks ./sinks
COPY connectors ./connectors
COPY simulator ./simulator
COPY loadtest ./loadtest
COPY --from=assets /src/vendor ./streams/console/static/vendor
RUN pip wheel --wheel-dir /wheels .

FROM python:3.11-slim
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    WHATSUP_DATA_DIR=/var/lib/whatsup
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels whatsup-pipeline \
    && useradd --system --uid 10001 --user-group --home-dir /var/lib/whatsup --create-home whatsup
USER whatsup
WORKDIR /var/lib/whatsup
# ingest (WHATSUP_INGEST_PORT), worker (WHATSUP_WEB_PORT), sink (WHATSUP_SINK_PORT), sender metrics,
# console (WHATSUP_CONSOLE_PORT).
EXPOSE 6065 6066 6067 6068 6069
ENTRYPOINT ["whatsup"]
CMD ["worker"]
