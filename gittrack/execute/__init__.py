"""Making runs: sweeps, Experiment and rerun, as tasks run by local, Dask or cluster executors."""
