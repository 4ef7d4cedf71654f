"""The one exception the analysis layer raises for input a person has to fix (a path, a file, a column, an
option).

The CLI turns it into a one-line message and an exit code; everything else that escapes is a bug.
"""

from __future__ import annotations

from sweeps.errors import InputError


class AnalysisInputError(InputError):
    """Results that cannot be analysed as asked; the message names the file, column or option and what to
    do."""
