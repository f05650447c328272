"""Utilities for skae users and tests."""

from .discovery import all_estimators

__all__ = ["all_estimators"]
