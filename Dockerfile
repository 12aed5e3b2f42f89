# devintel: the live daemon with models trained and quality-gated at build time.
#
#   docker build -t devintel .
#
# bakes the full-size models (~3.5 min, ~2 GB of memory for the bake step). A CI-sized bake takes seconds; models
# trained on so few events cannot pass the product's gate, so it is lowered explicitly (the snapshot's manifest
# records the training size and the gate used):
#
#   docker build -t devintel:ci \
#     --build-arg BOOTSTRAP_SAMPLES=20000 --build-arg BOOTSTRAP_HOLDOUT_SAMPLES=8000 \
#     --build-arg BOOTSTRAP_DAYS=40 --build-arg BOOTSTRAP_SEED=3 \
#     --build-arg QUALITY_MIN_ACCURACY=0 --build-arg QUALITY_MIN_PRECISION=0 \
#     --build-arg QUALITY_MIN_RECALL=0 --build-arg QUALITY_MIN_F1=0 \
#     --build-arg QUALITY_MAX_FALSE_ALARMS=1000 --build-arg QUALITY_MIN_CATCH_RATE=0 .
#
# Stages: builder (a venv with devintel installed), bake (the venv trains, gates and snapshots the models: a failed
# quality gate exits 1 and so fails the build), runtime (python slim, non-root, the venv and the baked models).
# Live snapshots go to the volume /var/lib/devintel, never into the baked directory: on first start the entrypoint
# seeds the volume from the baked snapshot (docker/entrypoint.sh).
# Needs BuildKit (the default builder since Docker Engine 23) for COPY --chmod.
# tests/test_docker.py lints this file with hadolint and runs the builder and bake RUN steps and the entrypoint
# outside Docker.

ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

# ---------------------------------------------------------------------------------------------------------- builder
FROM ${PYTHON_IMAGE} AS builder

ENV VIRTUAL_ENV=/opt/venv \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
# Only what the wheel is built from (.dockerignore keeps everything else out of the context).
COPY pyproject.toml README.md ./
COPY src ./src
# A non-editable install of the project and its runtime dependencies (no dev extras) into a venv that the
# later stages copy whole. Every dependency ships manylinux wheels for cp311 (amd64 and arm64): no compiler needed.
RUN python -m venv "$VIRTUAL_ENV" \
    && "$VIRTUAL_ENV/bin/pip" install --no-cache-dir . \
    && "$VIRTUAL_ENV/bin/devintel-daemon" --help >/dev/null

# ---------------------------------------------------------------------------------------------------------- bake
FROM builder AS bake

# Empty means the daemon's own default (DEVINTEL_BOOTSTRAP__* and DEVINTEL_QUALITY__MIN_* in the README):
# by default the image ships the full-size models, gated at the product's thresholds.
ARG BOOTSTRAP_SAMPLES=""
ARG BOOTSTRAP_HOLDOUT_SAMPLES=""
ARG BOOTSTRAP_DAYS=""
ARG BOOTSTRAP_SEED=""
ARG QUALITY_MIN_ACCURACY=""
ARG QUALITY_MIN_PRECISION=""
ARG QUALITY_MIN_RECALL=""
ARG QUALITY_MIN_F1=""
ARG QUALITY_MAX_FALSE_ALARMS=""
ARG QUALITY_MIN_CATCH_RATE=""

ENV PATH="/opt/venv/bin:${PATH}" \
    BAKED_MODEL_DIR=/opt/devintel/baked-models

# Generate, warm-start, gate on held-out homes, snapshot. Exit 1 (gate failed) fails the build; nothing is written.
RUN set -eu; \
    if [ -n "$BOOTSTRAP_SAMPLES" ]; then export DEVINTEL_BOOTSTRAP__SAMPLES="$BOOTSTRAP_SAMPLES"; fi; \
    if [ -n "$BOOTSTRAP_HOLDOUT_SAMPLES" ]; then export DEVINTEL_BOOTSTRAP__HOLDOUT_SAMPLES="$BOOTSTRAP_HOLDOUT_SAMPLES"; fi; \
    if [ -n "$BOOTSTRAP_DAYS" ]; then export DEVINTEL_BOOTSTRAP__DAYS="$BOOTSTRAP_DAYS"; fi; \
    if [ -n "$BOOTSTRAP_SEED" ]; then export DEVINTEL_BOOTSTRAP__SEED="$BOOTSTRAP_SEED"; fi; \
    if [ -n "$QUALITY_MIN_ACCURACY" ]; then export DEVINTEL_QUALITY__MIN_ACCURACY="$QUALITY_MIN_ACCURACY"; fi; \
    if [ -n "$QUALITY_MIN_PRECISION" ]; then export DEVINTEL_QUALITY__MIN_PRECISION="$QUALITY_MIN_PRECISION"; fi; \
    if [ -n "$QUALITY_MIN_RECALL" ]; then export DEVINTEL_QUALITY__MIN_RECALL="$QUALITY_MIN_RECALL"; fi; \
    if [ -n "$QUALITY_MIN_F1" ]; then export DEVINTEL_QUALITY__MIN_F1="$QUALITY_MIN_F1"; fi; \
    if [ -n "$QUALITY_MAX_FALSE_ALARMS" ]; then \
        export DEVINTEL_QUALITY__MAX_FALSE_ALARMS_PER_100_DEVICE_DAYS="$QUALITY_MAX_FALSE_ALARMS"; fi; \
    if [ -n "$QUALITY_MIN_CATCH_RATE" ]; then export DEVINTEL_QUALITY__MIN_CATCH_RATE="$QUALITY_MIN_CATCH_RATE"; fi; \
    DEVINTEL_MODEL_DIR="$BAKED_MODEL_DIR" devintel-daemon --bootstrap-synthetic --exit-after-bootstrap; \
    test -s "$BAKED_MODEL_DIR/current"; \
    rm -f "$BAKED_MODEL_DIR/.lock"

# ---------------------------------------------------------------------------------------------------------- runtime
FROM ${PYTHON_IMAGE} AS runtime

ARG PYTHON_IMAGE
ARG VERSION=0.1.0
ARG VCS_REF=unknown
LABEL org.opencontainers.image.title="devintel" \
      org.opencontainers.image.description="Predicts which smart-home devices are about to fail, from their MQTT telemetry (River online models, pre-trained on synthetic data)." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${VCS_REF}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}"

# A fixed uid/gid, so that a bind-mounted model directory can be chowned to it (chown -R 10001:10001 DIR).
RUN groupadd --system --gid 10001 devintel \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/devintel --no-create-home \
       --shell /usr/sbin/nologin devintel \
    && mkdir -p /var/lib/devintel/models \
    && chown -R 10001:10001 /var/lib/devintel

COPY --from=builder /opt/venv /opt/venv
# Read-only for the service (owned by root): the pristine models every new volume is seeded from.
COPY --from=bake /opt/devintel/baked-models /opt/devintel/baked-models
COPY --chmod=0755 docker/entrypoint.sh /usr/local/bin/devintel-entrypoint

ENV VIRTUAL_ENV=/opt/venv \
    PATH="/opt/venv/bin:${PATH}" \
    BAKED_MODEL_DIR=/opt/devintel/baked-models \
    DEVINTEL_MODEL_DIR=/var/lib/devintel/models \
    DEVINTEL_HTTP__HOST=0.0.0.0 \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

# Declared after the mkdir/chown above, so that a new named volume starts with that ownership.
VOLUME ["/var/lib/devintel"]
# Not the volume: settings also come from a .env in the working directory, and none belongs in the image.
WORKDIR /opt/devintel
USER 10001:10001

EXPOSE 8019
# 200 when ok; 503 (degraded: the broker is away) and connection errors make urlopen raise, so exit 1.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('DEVINTEL_HTTP__PORT', '8019') + '/health', timeout=4)"]

# The daemon handles SIGTERM: stops intake, drains, writes the final snapshot, exits 0 (compose: stop_grace_period).
STOPSIGNAL SIGTERM
ENTRYPOINT ["devintel-entrypoint"]
