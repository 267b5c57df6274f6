"""The one error type a user can cause (a bad upload, a wrong phase, a missing tag)."""


class InputError(ValueError):
    """Unusable input, with a sentence a radiologist understands as its message.

    Programming errors stay ordinary exceptions; only this type is shown on a page or printed
    by the CLI without a traceback.
    """
