"""Errors of the local stack; every message names the logical id (and type) it is about."""


class TemplateError(ValueError):
    """The template uses something the local stack cannot evaluate or create."""


class StackError(RuntimeError):
    """The local stack could not be started, or an operation on it failed."""
