"""User-facing errors: one clear line and a non-zero exit, never a traceback."""


class UserError(Exception):
    """Bad input from the user (config, dataset root, files, missing stage).

    The CLI prints ``error: <message>`` on one line and exits with status 2.
    """
