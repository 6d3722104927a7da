"""The one exception type users see from this project."""


class NucleiError(ValueError):
    """Bad input or an impossible request, with the file and the problem in the message.

    Raised for user-facing problems (unreadable image, mask of the wrong shape,
    malformed submission, bad config value). Internal invariants use ``assert``.
    """

    def __init__(self, message, path=None):
        self.path = None if path is None else str(path)
        super().__init__(f"{self.path}: {message}" if self.path else message)


def dataclass_from_dict(cls, values, what, source=None):
    """Build dataclass ``cls`` from a dict read from a file, naming unknown fields clearly.

    ``what`` says which settings they are (e.g. 'U-Net config'); ``source`` is the file.
    """
    import dataclasses

    unknown = set(values) - {field.name for field in dataclasses.fields(cls)}
    if unknown:
        raise NucleiError(f"unknown {what} fields: {', '.join(sorted(unknown))}", source)
    return cls(**values)
