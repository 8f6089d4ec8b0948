"""The one exception type users see: a clear, one-paragraph explanation of bad input."""


class TextxferError(Exception):
    """A problem with the user's input or recipe, explained in one paragraph.

    The CLI prints the message on stderr and exits with status 2, with no traceback.
    The message should say what is wrong, where (file, row, column, key) and how to fix it.
    """

    exit_code = 2
