"""Running the appliance: Prometheus metrics, the exporter, Jetson telemetry, clients, load tools."""
