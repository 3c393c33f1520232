"""The bulkops benchmark: scenarios, the harness and the baseline clients it compares bulkops with."""
