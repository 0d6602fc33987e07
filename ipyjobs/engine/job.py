"""What a job is: a class with ``async def run(self, ctx)``, registered under a kind name."""

from __future__ import annotations

import dataclasses
import difflib
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar

from .errors import UnknownJobKind

if TYPE_CHECKING:
    from .context import JobContext

_registry: dict[str, type[Job]] = {}

#: ``metadata`` of a dataclass job's field that is not one of its stored parameters, for what
#: concerns this kernel only (where its work runs): a job rebuilt from the store (a resume
#: after a restart) gets the field's default, so stored jobs stay portable.
UNSTORED = MappingProxyType({"stored": False})


class Job:
    """Base class of every job.

    Subclass it with a kind name, usually as a dataclass so its parameters can be stored and
    the job rebuilt after a restart::

        @dataclass
        class Count(Job, kind="demo.count"):
            n: int

            async def run(self, ctx):
                for i in range(self.n):
                    await ctx.checkpoint()
                    ctx.progress(i + 1, self.n)
                return self.n

    Class attributes: ``resumable`` (rebuild from the last ``ctx.checkpoint(state)`` after an
    interruption) and ``group`` (the concurrency-limit group; by default none).
    Override ``title`` for display and ``key`` to share one run among identical requests.
    """

    kind: ClassVar[str]
    resumable: ClassVar[bool] = False
    group: ClassVar[str | None] = None

    def __init_subclass__(cls, kind: str | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if kind is None:
            return
        previous = _registry.get(kind)
        # Re-running a notebook cell defines the class again: the newest definition wins.
        if previous is not None and previous.__qualname__ != cls.__qualname__:
            raise ValueError(
                f"job kind {kind!r} is already registered by {previous.__module__}."
                f"{previous.__qualname__}; choose another kind name"
            )
        cls.kind = kind
        _registry[kind] = cls

    async def run(self, ctx: JobContext) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must define async def run(self, ctx)")

    @property
    def title(self) -> str:
        """What the job is called in panels and logs."""
        return self.kind

    @property
    def key(self) -> str | None:
        """Jobs with the same key share one run while it is active (``None``: never shared)."""
        return None

    def params(self) -> dict[str, Any]:
        """The constructor arguments, as plain data, to rebuild the job after a restart
        (without the fields marked :data:`UNSTORED`)."""
        return {name: getattr(self, name) for name in _stored_fields(type(self))}

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> Job:
        return cls(**params)


_stored_names: dict[type, tuple[str, ...]] = {}


def _stored_fields(cls: type) -> tuple[str, ...]:
    """Names of the constructor fields a job of ``cls`` is stored with (found once per class:
    every dispatch asks)."""
    names = _stored_names.get(cls)
    if names is None:
        fields = dataclasses.fields(cls) if dataclasses.is_dataclass(cls) else ()
        names = tuple(f.name for f in fields if f.init and f.metadata.get("stored", True))
        _stored_names[cls] = names
    return names


def job_class(kind: str) -> type[Job]:
    """The class registered for ``kind``; the error lists close matches."""
    try:
        return _registry[kind]
    except KeyError:
        close = difflib.get_close_matches(kind, _registry, n=5)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise UnknownJobKind(
            f"no job class is registered for kind {kind!r}: import the module that defines it."
            + hint
        ) from None


def registered_kinds() -> list[str]:
    return sorted(_registry)
