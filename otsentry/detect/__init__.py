"""Rule engine, alerts and evidence: protocol events → alerts."""
