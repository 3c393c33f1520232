"""The command line: arguments, commands, the progress display and the demo."""
