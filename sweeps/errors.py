"""The one error type for input a user must fix, shared by every layer.

The CLI prints such an error as one line and exits with code 2; anything else is a bug and keeps its traceback.
Each layer subclasses it (spec, data, analysis input), so the CLI needs to import none of them to recognise one.
"""


class InputError(ValueError):
    """Input the user must fix (a spec, a data file, a results directory); the message is one line."""
