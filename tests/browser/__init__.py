"""Browser tests of the web console (Playwright + Chromium against a real keymint serve)."""
