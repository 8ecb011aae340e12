"""Screens of the app: runs, new run, dashboard, comparison, log, help."""
