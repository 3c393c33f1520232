"""Tests of bulkops.cli."""
