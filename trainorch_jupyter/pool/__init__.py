"""The engine pool: ipyparallel engines, one per GPU, owned or attached."""
