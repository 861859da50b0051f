"""A checked scenario: the model of a run, the checker, sweeps."""
