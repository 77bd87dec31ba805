"""Application layer: configuration, CLI, security, persistence wiring, metrics."""
