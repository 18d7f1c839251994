"""Instruments: measure the service and configurations (beside the CLI, on top)."""
