"""%tune: Optuna studies across the engine pool (independent of any UI)."""
