"""Plan → server + journal: the engine, the units (batches) it sends, and the runner around it."""
