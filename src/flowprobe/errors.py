"""Errors a user can act on: which option, which value, what is allowed."""


class OptionError(ValueError):
    def __init__(self, option, value, allowed):
        self.option, self.value, self.allowed = option, value, allowed
        super().__init__(f"{option}: invalid value {value!r} (allowed: {allowed})")


def check_int(error, option, value, low, high):
    """Raises error(option, value, allowed) unless value is an int in [low, high]."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise error(option, value, f"an integer from {low} to {high}")


def check_seconds(error, option, value, low, high):
    """Raises error(option, value, allowed) unless value is a number of seconds in [low, high]."""
    if (isinstance(value, bool) or not isinstance(value, (int, float))
            or not low <= value <= high):
        raise error(option, value, f"seconds from {low:g} to {high}")
