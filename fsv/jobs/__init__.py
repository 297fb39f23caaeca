"""Batch jobs on a cluster scheduler or dask: scheduler options, SLURM queries, waiting with causes."""
