"""The one error a user can cause by configuration: reported as one line, exit code 2."""
from __future__ import annotations


class ConfigError(ValueError):
    """A user-caused configuration error: reported as one line, exit code 2."""
