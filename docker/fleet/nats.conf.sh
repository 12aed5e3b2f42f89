#!/bin/sh
# Writes one node's nats-server configuration from devintel-fleet's own renderer (the same as the tests use), so
# the servers' partition mappings always match DEVINTEL_FLEET_PARTITIONS. Run by the compose file's `nats-config`.
set -eu
for n in 1 2 3; do
    devintel-fleet server-config --name "nats$n" --store-dir /data/jetstream \
        --route nats1:6222 --route nats2:6222 --route nats3:6222 > "/config/nats$n.conf"
done
