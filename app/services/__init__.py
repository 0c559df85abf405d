"""The rules: services take the session, raise domain errors, flush but never commit."""
