"""Tests of bulkops.odata."""
