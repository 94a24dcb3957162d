"""Errors a user can act on.

Everything the CLI should print as one line (and exit 2) derives from :class:`ChatQAError`; any other
exception is a bug and keeps its traceback.
"""

from __future__ import annotations


class ChatQAError(Exception):
    """A problem with the user's input or setup, phrased so that the message alone says what to do."""

    exit_code = 2


class InputError(ChatQAError):
    """A document, question or option that cannot be used as given."""


class ConfigError(ChatQAError):
    """A profile or setting that is missing or invalid."""


class ContextTooLongError(ChatQAError):
    """The long-context route was forced, but the document does not fit the generator's window."""


class ModelLoadError(ChatQAError):
    """A model could not be found or loaded from the local disk (nothing is downloaded at run time)."""
