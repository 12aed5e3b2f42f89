"""Everything that does I/O: the command line, and later settings, MQTT, HTTP and the service."""
