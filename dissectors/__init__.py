"""Protocol dissectors (installed as ``otsentry.dissectors``); one package per protocol."""
