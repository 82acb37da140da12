"""Third-party clients against the real example process: Node's ``ws`` and headless Chromium."""
