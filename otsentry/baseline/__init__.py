"""Per-segment communication baseline: learn what normal looks like, detect and explain
deviations (see ``otsentry.baseline.aspect`` for the contract aspects follow)."""
