"""devintel: predicts which smart-home devices are about to fail, from their MQTT telemetry."""

__version__ = "0.1.0"
