"""The base of every error a user of vtok can cause; ``cli.py`` maps each to one ``vtok: error:`` line.

It lives at the bottom of the import order (``cli → bench → codec → bitstream``) so every layer can derive from it.
Each subclass also derives from the built-in error it refines (``ValueError`` or ``RuntimeError``), so code that
catches those keeps working.
"""


class VtokError(Exception):
    """Something about vtok's input, files, models or tools that the user can act on; the message says what."""


class ToolError(VtokError, RuntimeError):
    """An external tool (an encoder of the benchmark, a child process) failed."""
