"""Tests of bulkops.plan."""
