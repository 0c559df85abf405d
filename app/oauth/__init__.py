"""The OAuth protocol: Authlib wiring, grants, endpoints, their routes, bearer checks."""
