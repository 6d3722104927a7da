"""The one exception type users see from this project."""


class NucleiError(ValueError):
    """Bad input or an impossible request, with the file and the problem in the message.

    Raised for user-facing problems (unreadable image, mask of the wrong shape,
    malformed submission, bad config value). Internal invariants use ``assert``.
    """

    def __init__(self, message, path=None):
        self.path = None if path is None else str(path)
        super().__init__(f"{self.path}: {message}" if self.path else message)
