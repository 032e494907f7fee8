"""cardperso: a production system for smart-card personalization bureaus."""

__version__ = "0.1.0"
