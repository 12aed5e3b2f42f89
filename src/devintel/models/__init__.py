"""Online models (per-device features, delayed labels, River learners, quality gate, snapshots).

Pure code: no asyncio, MQTT or HTTP. Not built yet; see the project's issues.
"""
