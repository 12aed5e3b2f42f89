"""Pure ingest: from a received message to the events, predictions and messages to publish; no I/O.

- :mod:`~devintel.ingest.adapters`: one adapter per source dialect (devintel's own topics, Zigbee2MQTT, Home
  Assistant's MQTT and its websocket API), each turning a message into canonical events and facts;
- :mod:`~devintel.ingest.validation`: the checks every adapter runs (ranges, times, ids, names);
- :mod:`~devintel.ingest.inbound` and :mod:`~devintel.ingest.outbound`: what comes in and what goes out;
- :mod:`~devintel.ingest.handler`: message -> event -> prediction -> messages to publish;
- :mod:`~devintel.ingest.counters`: what was handled, rejected and shed.

The I/O around it (the MQTT session, Home Assistant's websocket client, HTTP, files) is :mod:`devintel.daemon`'s.
"""
