"""Errors a user can act on: which option, which value, what is allowed."""


class OptionError(ValueError):
    def __init__(self, option, value, allowed):
        self.option, self.value, self.allowed = option, value, allowed
        super().__init__(f"{option}: invalid value {value!r} (allowed: {allowed})")

