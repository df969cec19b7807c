"""The one exception type a user is meant to see.

Anything the user can cause (missing data, a bad param, an unreachable tracking server) is raised as
`LatentlabError` with a one-line message that says what is wrong and how to fix it; the stage runner
prints it without a traceback. Every other exception is a bug and keeps its traceback.
"""


class LatentlabError(Exception):
    """A problem the user can fix; its message is shown as one line."""
