"""Job → Plan: page the targets, diff them, guard the plan; the plan file, the preview, undo and
retry plans."""
