"""HTTP blueprints and the request boundary."""
