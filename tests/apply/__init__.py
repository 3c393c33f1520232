"""Tests of bulkops.apply."""
