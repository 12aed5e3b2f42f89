"""Everything that does I/O: settings, the service (start-up, the supervising runtime, the model service and its
refresh process), the MQTT session, Home Assistant's websocket client, the HTTP API, systemd notify, snapshot
files, the embedded broker, the simulated home, replay and the command line. The pure layers it drives are
:mod:`devintel.contract`, :mod:`devintel.generators`, :mod:`devintel.models` and :mod:`devintel.ingest`."""
