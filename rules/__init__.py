"""Rule files shipped with otsentry (installed as ``otsentry.rules``)."""
