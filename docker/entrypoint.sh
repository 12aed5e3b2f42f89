#!/bin/sh
# devintel container entrypoint: seed the model volume from the baked models on first start, then exec the daemon
# with --seed-from the baked models, so that a snapshot on the volume that an upgraded image cannot load (another
# River minor release, damage, a wrong signature) is moved aside into models/refused/ (kept) and replaced by a copy
# of the baked one, with a warning in the log, instead of a restart loop (devintel.daemon.service.prepare_models).
#
# The image bakes a quality-gated snapshot into $BAKED_MODEL_DIR (read-only) at build time; the daemon serves and
# writes live snapshots in $DEVINTEL_MODEL_DIR (on the volume). When the model directory holds no `current` pointer
# (a new, empty volume), the baked snapshot versions and then `current` are moved in, each by a rename from a
# temporary directory inside the model directory: a start killed half-way leaves either nothing or whole version
# directories without `current`, and the next start finishes the job (`.tmp-*` leftovers are removed by the
# daemon's next snapshot write). A volume that already has `current` is never touched: its live snapshots win.
#
# Arguments go to devintel-daemon (`docker run IMAGE --config /etc/devintel.toml`). Only a run of the daemon seeds:
# `--validate-config` and `--help` check and exit without touching the volume, and a first argument of `devintel` or
# `devintel-daemon` runs that command as given (`docker compose run devintel devintel models`), unseeded.
#
# Variables: DEVINTEL_MODEL_DIR (the daemon's; default `models`, as the daemon's), BAKED_MODEL_DIR (default
# /opt/devintel/baked-models; deliberately not DEVINTEL_-prefixed: the daemon rejects unknown DEVINTEL_* names).
# Only the environment is read: a model_dir set in a --config TOML file is not seen here, but the daemon's own
# --seed-from then seeds it (a copy of the baked snapshot under a new version name) when it holds no snapshot.
set -eu

log() {
    printf 'devintel-entrypoint: %s\n' "$*" >&2
}

die() {
    log "error: $*"
    exit 1
}

is_version() {
    # YYYYMMDDTHHMMSSZ-NNNN..., the snapshot store's version names
    case "$1" in
        [0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]T[0-9][0-9][0-9][0-9][0-9][0-9]Z-[0-9][0-9][0-9][0-9]*) return 0 ;;
        *) return 1 ;;
    esac
}

seed_models() {
    model_dir=$1
    baked_dir=$2

    if [ -f "$model_dir/current" ]; then
        log "model directory $model_dir holds a snapshot (current: $(head -c 64 "$model_dir/current")); not seeding"
        return 0
    fi
    if [ ! -f "$baked_dir/current" ]; then
        log "warning: no baked models in $baked_dir (no current file); not seeding $model_dir"
        return 0
    fi
    if ! mkdir -p "$model_dir" 2>/dev/null || [ ! -w "$model_dir" ]; then
        die "model directory $model_dir is not writable by uid $(id -u); for a bind mount: chown -R $(id -u):$(id -g) on the host directory"
    fi

    log "no snapshot in $model_dir: seeding it from the baked models in $baked_dir (current: $(head -c 64 "$baked_dir/current"))"
    tmp=$(mktemp -d "$model_dir/.tmp-seed-XXXXXXXX")
    trap 'rm -rf "$tmp"' EXIT
    copied=0
    for src in "$baked_dir"/*; do
        [ -d "$src" ] || continue
        version=$(basename "$src")
        is_version "$version" || continue
        if [ -e "$model_dir/$version" ]; then
            # moved in whole by an earlier, interrupted seeding (a rename is atomic)
            log "snapshot $version already in $model_dir; kept"
            continue
        fi
        cp -R "$src" "$tmp/$version"
        copied=$((copied + 1))
    done
    cp "$baked_dir/current" "$tmp/current"
    sync
    for src in "$tmp"/*; do
        version=$(basename "$src")
        [ "$version" = current ] && continue
        mv "$src" "$model_dir/$version"
        log "seeded snapshot $version"
    done
    # The commit point: the daemon loads what `current` names.
    mv "$tmp/current" "$model_dir/current"
    sync
    rmdir "$tmp"
    trap - EXIT
    log "seeded $model_dir ($copied snapshot(s) copied); current: $(head -c 64 "$model_dir/current")"
}

case "${1:-}" in
    devintel | devintel-daemon) exec "$@" ;;
esac
for arg in "$@"; do
    case "$arg" in
        --validate-config | -h | --help) exec devintel-daemon "$@" ;;
    esac
done

baked=${BAKED_MODEL_DIR:-/opt/devintel/baked-models}
seed_models "${DEVINTEL_MODEL_DIR:-models}" "$baked"
if [ -f "$baked/current" ]; then
    log "exec devintel-daemon --seed-from $baked $*"
    exec devintel-daemon --seed-from "$baked" "$@"
fi
log "exec devintel-daemon $*"
exec devintel-daemon "$@"
