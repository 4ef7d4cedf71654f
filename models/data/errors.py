"""The one exception the data pipeline raises for problems a user can fix.

It lives in its own module so every part of the pipeline can raise it without importing the others."""

from __future__ import annotations

from sweeps.errors import InputError


class DataError(InputError):
    """Data that cannot be used as configured. The message is one line that says how to fix it."""
