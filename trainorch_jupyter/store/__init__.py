"""The run store: everything a job writes, under ``TRAINORCH_HOME``."""
