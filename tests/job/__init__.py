"""Tests of bulkops.job."""
