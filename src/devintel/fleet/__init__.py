"""Fleet mode: many homes per worker on a NATS JetStream cluster (``devintel-fleet``, docs/fleet.md).

Homes publish under ``homes/<home_id>/...`` through NATS's MQTT listener; the servers map each home's ingress
subjects to one of N partitions of a replicated stream (:mod:`~devintel.fleet.subjects`); workers lease partitions
(:mod:`~devintel.fleet.leases`), run each home through the daemon's own handler (:mod:`~devintel.fleet.homes`),
snapshot partition state to the object store with the stream sequence it covers (:mod:`~devintel.fleet.state`)
and acknowledge only then; a leased trainer learns from every home's examples and publishes gated model versions
(:mod:`~devintel.fleet.trainer`).
"""
