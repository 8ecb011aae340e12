"""nanogpt-tui: the Textual app and the command line for the engine."""
