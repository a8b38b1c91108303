# Copyright (c) jexida-cluster team
# Apache License 2.0 (see the collection's galaxy.yml)
"""The one root of the errors a person can fix: bad input, a bad file, an unknown name.

Every face catches ``JexidaError`` once (the CLI prints it, the MCP server returns it as
the tool error, a module fails with it) and shows its message as is. Anything else is a
bug and keeps its traceback.
"""

from __future__ import annotations


class JexidaError(Exception):
    """A user error: the message says what was wrong and what to do about it."""
