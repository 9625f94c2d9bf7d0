"""Helpers for development and tests, not for production."""
