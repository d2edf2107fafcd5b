"""Capture sources: pcap, pcapng and gzip-compressed files (live capture comes later)."""
