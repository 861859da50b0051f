"""Running checked scenarios: the runner, the TFF engine, the backends that execute it."""
