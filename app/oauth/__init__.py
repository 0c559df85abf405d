"""Authlib wiring: the OAuth server, grants and endpoints."""
