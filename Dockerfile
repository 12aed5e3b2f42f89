# devintel: the live daemon with models trained and quality-gated at build time.
#
#   docker build -t devintel --build-arg VCS_REF="$(git rev-parse HEAD)" .
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
# Stages: builder (a venv with devintel installed, every version pinned by requirements.lock), bake (the venv trains,
# gates and snapshots the models: a failed quality gate exits 1 and so fails the build), runtime-venv (the same venv
# less what only installing needs), runtime (python slim, non-root, that venv and the baked models).
# Live snapshots go to the volume /var/lib/devintel, never into the baked directory: on first start the entrypoint
# seeds the volume from the baked snapshot (docker/entrypoint.sh), and replaces with it any snapshot there that an
# upgraded image cannot load (kept aside in models/refused/).
# Works with the classic builder and with BuildKit (no --chmod, no heredocs, no cache mounts).
# scripts/check-docker builds this file with a real Docker engine and runs the image (seeding, health, SIGTERM,
# --read-only); tests/test_docker.py lints it with hadolint and runs its RUN steps and the entrypoint outside Docker.

ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

# ---------------------------------------------------------------------------------------------------------- builder
FROM ${PYTHON_IMAGE} AS builder

ENV VIRTUAL_ENV=/opt/venv \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
# Only what the wheel is built from (.dockerignore keeps everything else out of the context).
# The dependencies first, in a layer of their own that only pyproject.toml and requirements.lock invalidate: exactly
# the versions of requirements.lock (a pip constraints file; PIP_CONSTRAINT also pins the build backend in pip's
# isolated build environment), only the runtime dependencies (no extras: no pyarrow, no dev tools). Every one ships
# manylinux wheels for cp311 (amd64 and arm64): no compiler needed.
COPY pyproject.toml requirements.lock ./
RUN python -m venv "$VIRTUAL_ENV" \
    && python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
       > runtime-requirements.txt \
    && PIP_CONSTRAINT="$PWD/requirements.lock" "$VIRTUAL_ENV/bin/pip" install --no-cache-dir -r runtime-requirements.txt
# Then devintel itself, non-editable, with no dependency left to resolve.
COPY README.md ./
COPY src ./src
RUN PIP_CONSTRAINT="$PWD/requirements.lock" "$VIRTUAL_ENV/bin/pip" install --no-cache-dir --no-deps . \
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
# "1": a failed gate writes the snapshot anyway (--allow-low-quality, recorded in its manifest) instead of failing the
# build. The default bootstrap passes the gate (README, "Held-out quality"); smaller or other-seeded bakes may not.
ARG ALLOW_LOW_QUALITY=""

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
    allow=""; if [ "$ALLOW_LOW_QUALITY" = 1 ]; then allow=--allow-low-quality; fi; \
    DEVINTEL_MODEL_DIR="$BAKED_MODEL_DIR" devintel-daemon --bootstrap-synthetic --exit-after-bootstrap $allow; \
    test -s "$BAKED_MODEL_DIR/current"; \
    rm -f "$BAKED_MODEL_DIR/.lock"

# ------------------------------------------------------------------------------------------------------ runtime-venv
FROM builder AS runtime-venv

# What only installing needs leaves: pip and setuptools (a Python 3.11 venv has both; the image never installs), and
# the test suites that numpy, scipy and pandas ship inside their packages (about 95 MB, never run here). pandas stays:
# the live daemon imports it for a refresh (devintel/cmd/refresh, POST /models/refresh re-bootstraps from synthetic data) and `devintel models`.
# The import line checks that the serving path and the bootstrap path still import.
RUN purelib=$("$VIRTUAL_ENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])') \
    && find "$purelib/numpy" "$purelib/scipy" "$purelib/pandas" -type d -name tests -prune -exec rm -rf {} + \
    && "$VIRTUAL_ENV/bin/python" -m pip uninstall --yes --quiet pip setuptools \
    && "$VIRTUAL_ENV/bin/python" -c "import devintel.daemon.service, devintel.daemon.healthcheck, devintel.models.bootstrap"

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

# A fixed uid/gid, so that a bind-mounted model directory can be chowned to it (chown -R 10001:10001 DIR). Not
# --system: system ids end at 999, and useradd warns about one above; --no-log-init keeps lastlog/faillog small.
RUN groupadd --gid 10001 devintel \
    && useradd --uid 10001 --gid 10001 --no-log-init --home-dir /var/lib/devintel --no-create-home \
       --shell /usr/sbin/nologin devintel \
    && mkdir -p /var/lib/devintel/models \
    && chown -R 10001:10001 /var/lib/devintel

COPY --from=runtime-venv /opt/venv /opt/venv
# Read-only for the service (owned by root): the pristine models every new volume is seeded from.
COPY --from=bake /opt/devintel/baked-models /opt/devintel/baked-models
# Executable in git (mode 100755), and COPY keeps the mode: no --chmod, which the classic builder lacks.
COPY docker/entrypoint.sh /usr/local/bin/devintel-entrypoint

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
# GET /health at the address the daemon's own settings give (environment, .env, and the --config the daemon was
# started with): 200 is healthy; 503 (degraded: the broker is away) and no answer are not. With the HTTP API off
# (DEVINTEL_HTTP__PORT=0) it has nothing to ask and passes. It imports only the settings (0.2 s).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-m", "devintel.daemon.healthcheck"]

# The daemon handles SIGTERM: stops intake, drains, writes the final snapshot, exits 0 (compose: stop_grace_period).
STOPSIGNAL SIGTERM
ENTRYPOINT ["devintel-entrypoint"]
