"""The one context-manager base of the adapters: ``with Adapter(...) as a:`` closes it.

An adapter that owns a resource (a database, a GPIO pin, a socket) subclasses
:class:`Closing` and writes only ``close()``; ``__enter__`` returns the adapter itself and
``__exit__`` calls ``close()`` whatever happened, never swallowing the exception. ``close()``
must be safe to call twice (the ``with`` block may have closed it already).
"""

from __future__ import annotations

import abc
from typing import Self

__all__ = ["Closing"]


class Closing(abc.ABC):
    """Base of an adapter that is closed on leaving its ``with`` block."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release what the adapter holds; idempotent."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
