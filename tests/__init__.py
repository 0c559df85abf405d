"""keymint test suite."""
