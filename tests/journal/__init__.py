"""Tests of bulkops.journal."""
