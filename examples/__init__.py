"""Example task module and the demo (not part of the installed distribution)."""
