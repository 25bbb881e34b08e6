"""Records: what the suite writes and how it trusts it: atomic files, cell identity,
provenance, the model file's format. No torch; every other layer may use it."""
