"""The base of every error a user of vtok can cause; ``cli.py`` maps each to one ``vtok: error:`` line.

It lives at the bottom of the import order (``cli → bench → codec → bitstream``) so every layer can derive from it.
Each subclass also derives from the built-in error it refines (``ValueError`` or ``RuntimeError``), so code that
catches those keeps working.
"""


class VtokError(Exception):
    """Something about vtok's input, files, models or tools that the user can act on; the message says what."""


class ToolError(VtokError, RuntimeError):
    """An external tool (an encoder of the benchmark, a child process) failed."""


class DamagedInput(VtokError):
    """The input was damaged: what was intact was read and the output written (lost frames concealed), but not all
    of it. The command line exits with ``exit_code`` (3), apart from 1, "nothing usable"."""

    exit_code = 3
