"""The run store: run directories, the journal of every item and attempt, and reports read from it."""
