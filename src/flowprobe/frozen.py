"""Value classes for settings, without dataclasses.

`dataclasses` imports `inspect` (and with it ast, dis, tokenize) and
compiles an `__init__`, `__eq__`, `__hash__` and `__repr__` for every class
with exec: on Python 3.11 that was about a quarter of the daemon's start-up
instructions and of its idle heap.  A Frozen subclass declares its fields
as annotated class attributes, as a frozen dataclass does, and gets the same
behaviour from one generic implementation:

    class Account(Frozen):
        name: str
        uid: int = 0

    Account("nobody", uid=65534)           positional or keyword, defaults
    replace(account, uid=0)                a copy with fields changed
    account.uid = 1                        FrozenInstanceError
    __post_init__(self)                    called after the fields are set

Equality and hashing compare the fields in order (minus those named in
`_not_compared`), only between instances of the same class.
"""

_MISSING = object()


class FrozenInstanceError(AttributeError):
    """A Frozen instance's field assigned."""


class Frozen:
    __slots__ = ()
    _fields = ()          # names in declaration order, inherited ones first
    _defaults = {}
    _not_compared = ()    # fields equality and the hash ignore (a display name)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        fields = list(cls._fields)
        defaults = dict(cls._defaults)
        for name in cls.__dict__.get("__annotations__", {}):
            if name not in fields:
                fields.append(name)
            if name in cls.__dict__:
                defaults[name] = cls.__dict__[name]
        cls._fields = tuple(fields)
        cls._defaults = defaults
        cls._compared = tuple(name for name in fields if name not in cls._not_compared)

    def __init__(self, *args, **kwargs):
        fields = self._fields
        if len(args) > len(fields):
            raise TypeError(f"{type(self).__name__}() takes {len(fields)} fields, "
                            f"{len(args)} given")
        values = dict(zip(fields, args))
        for name, value in kwargs.items():
            if name not in fields:
                raise TypeError(f"{type(self).__name__}() has no field {name!r}")
            if name in values:
                raise TypeError(f"{type(self).__name__}() got {name!r} twice")
            values[name] = value
        setter = object.__setattr__
        for name in fields:
            value = values.get(name, _MISSING)
            if value is _MISSING:
                value = self._defaults.get(name, _MISSING)
                if value is _MISSING:
                    raise TypeError(f"{type(self).__name__}() missing field {name!r}")
            setter(self, name, value)
        post_init = getattr(self, "__post_init__", None)
        if post_init is not None:
            post_init()

    def __setattr__(self, name, value):
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name):
        raise FrozenInstanceError(f"cannot delete field {name!r}")

    def _key(self):
        return tuple(getattr(self, name) for name in self._compared)

    def __eq__(self, other):
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self):
        return hash(self._key())

    def __repr__(self):
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._fields)
        return f"{type(self).__name__}({shown})"


def replace(instance, **changes):
    """A copy of a Frozen instance with some fields changed (checked again)."""
    values = {name: getattr(instance, name) for name in instance._fields}
    values.update(changes)
    return type(instance)(**values)


def field_names(cls):
    return list(cls._fields)
