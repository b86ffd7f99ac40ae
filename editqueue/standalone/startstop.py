"""`with` support for things that are started and stopped (embedded servers, the supervisor)."""

from __future__ import annotations

from types import TracebackType
from typing import Self


class StartStop:
    """`with thing:` starts it on entry and stops it on exit, whatever ended the block."""

    def start(self) -> object:
        """Start; subclasses do the work."""
        raise NotImplementedError

    def stop(self) -> None:
        """Stop; subclasses do the work."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
