"""Legacy-key tests."""
