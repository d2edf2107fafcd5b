"""Passive asset inventory."""
