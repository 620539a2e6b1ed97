"""Objects whose attributes are set by their constructor and never after: jaxnet's layers
and loss layers are immutable descriptions, so a compiled function that closed over one
can never see it change."""

from __future__ import annotations

import functools
from typing import Any, ClassVar


class Immutable:
    """Attributes may be assigned while the outermost constructor runs; afterwards
    assigning one raises ``AttributeError`` naming the class and ``immutable_hint``.

    PyTorch has no counterpart: a ``torch.nn.Module``'s attributes stay assignable.
    """

    immutable_hint: ClassVar[str] = "build a new one instead"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "__init__" not in cls.__dict__:
            return
        constructor = cls.__dict__["__init__"]

        @functools.wraps(constructor)
        def __init__(self, *args: Any, **kw: Any) -> None:
            constructor(self, *args, **kw)
            if type(self).__init__ is __init__:  # the outermost constructor has finished
                object.__setattr__(self, "_frozen", True)

        cls.__init__ = __init__

    def refuse_if_frozen(self) -> None:
        """``AttributeError`` once the constructor has returned."""
        if getattr(self, "_frozen", False):
            raise AttributeError(f"{type(self).__name__} is immutable: {self.immutable_hint}")

    def __setattr__(self, name: str, value: Any) -> None:
        self.refuse_if_frozen()
        object.__setattr__(self, name, value)
