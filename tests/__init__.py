"""The bulkops test suite: one folder per package, against the simulator over real HTTP."""
