"""Writing widget traits only when they change, one comm message per widget."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import ipywidgets as widgets

#: What a view wants its widgets to show: (widget, {trait: value}) pairs.
Desired = Iterable[tuple[widgets.Widget, dict[str, Any]]]


class TextRepr:
    """Mixin for widget views: ``text/plain`` is the view's full ``repr`` (ipywidgets cuts it
    at 110 characters), stable for nbval and terminals."""

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        bundle = super()._repr_mimebundle_(**kwargs)  # type: ignore[misc]
        if bundle is None:  # a widget without a view
            return None
        if isinstance(bundle, tuple):  # anywidget: (data, metadata)
            data, metadata = bundle
            return {**data, "text/plain": repr(self)}, metadata
        bundle["text/plain"] = repr(self)
        return bundle


class SentState:
    """Remembers what was last written to each widget of a view."""

    def __init__(self) -> None:
        self._sent: dict[int, dict[str, Any]] = {}

    def matches(self, desired: Desired) -> bool:
        """Whether the widgets already show ``desired``."""
        return all(
            self._sent.get(id(widget), {}).get(name) == value
            for widget, values in desired
            for name, value in values.items()
        )

    def apply(self, desired: Desired) -> int:
        """Write what changed, inside ``hold_sync`` so each widget sends one message; return
        the number of messages."""
        messages = 0
        for widget, values in desired:
            sent = self._sent.setdefault(id(widget), {})
            changed = {k: v for k, v in values.items() if sent.get(k) != v}
            if not changed:
                continue
            with widget.hold_sync():
                for name, value in changed.items():
                    setattr(widget, name, value)
            sent.update(changed)
            messages += 1
        return messages
