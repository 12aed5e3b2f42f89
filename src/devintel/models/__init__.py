"""Online models: per-device features, delayed labels, River learners, metrics, quality gate, snapshots
and the bootstrap that ties them together.

No asyncio, MQTT or HTTP here (the snapshot store writes files, nothing else does I/O):

- :mod:`~devintel.models.features`: events in, feature vectors out, bounded state per device;
- :mod:`~devintel.models.labels`: the delayed-label buffer;
- :mod:`~devintel.models.online`: the one path from an event to a prediction and from a label to learning;
- :mod:`~devintel.models.learners`: the River learner devintel ships and the inputs it sees;
- :mod:`~devintel.models.metrics` and :mod:`~devintel.models.gate`: quality and its thresholds;
- :mod:`~devintel.models.snapshots`: atomic, verified snapshots;
- :mod:`~devintel.models.bootstrap`: generate, warm-start, validate, gate, snapshot.

"""
