"""Rarely used per-object fields kept out of the object until one is set (issue 17).

An idle connection must cost little memory, and a slot costs 8 bytes on every instance
whether or not it is ever used. Fields that nearly every instance leaves at their default
(v5 topic aliases, enhanced authentication, a delayed will, ...) live instead in one
side object, created by the first write of a non-default value; reading them on an object
without one returns the default.

    class Thing:
        __slots__ = ("hot", "_rare")
        will: Rare[Will | None] = Rare(ThingRare, "will")

``ThingRare`` is a ``__slots__`` class built with :func:`rare_store`; the owner sets
``self._rare = None`` in ``__init__``.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar, overload

T = TypeVar("T")


def rare_store(name: str, defaults: dict[str, Any]) -> type:
    """A ``__slots__`` class holding ``defaults``' fields, each starting at its default.
    Defaults must be immutable (None, numbers, bools, strings): they are shared."""

    def __init__(self: Any) -> None:
        for field, value in defaults.items():
            setattr(self, field, value)

    return type(
        name,
        (),
        {"__slots__": tuple(defaults), "__init__": __init__, "DEFAULTS": defaults},
    )


class Rare(Generic[T]):
    """The attribute ``name`` of the owner, kept in its ``_rare`` store object. Writing the
    default while the owner has no store creates none."""

    __slots__ = ("store", "default", "get_field", "set_field")

    def __init__(self, store: type, name: str) -> None:
        self.store = store
        self.default: Any = store.DEFAULTS[name]  # type: ignore[attr-defined]
        member = store.__dict__[name]  # the slot's descriptor: no name lookup per access
        self.get_field = member.__get__
        self.set_field = member.__set__

    @overload
    def __get__(self, obj: None, owner: Any) -> Rare[T]: ...
    @overload
    def __get__(self, obj: object, owner: Any) -> T: ...
    def __get__(self, obj: object | None, owner: Any) -> Rare[T] | T:
        if obj is None:
            return self
        rare = obj._rare  # type: ignore[attr-defined]
        return self.default if rare is None else self.get_field(rare)  # type: ignore[no-any-return]

    def __set__(self, obj: object, value: T) -> None:
        rare = obj._rare  # type: ignore[attr-defined]
        if rare is None:
            default = self.default
            if value is default or (type(value) is type(default) and value == default):
                return
            rare = obj._rare = self.store()  # type: ignore[attr-defined]
        self.set_field(rare, value)
