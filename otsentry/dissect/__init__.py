"""Dissector framework: the contract every protocol dissector follows, and the registry."""
