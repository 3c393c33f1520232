"""Tests of bulkops.api."""
