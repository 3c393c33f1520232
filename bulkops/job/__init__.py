"""TOML → Job: load a job file, check its fields, its target and its action against the v7 model."""

from bulkops.job.load import load_job, parse_job, read_job

__all__ = ["load_job", "parse_job", "read_job"]
