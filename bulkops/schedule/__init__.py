"""Scheduled jobs: a loop around the pipeline that runs each due slot as plan → guards → apply."""
