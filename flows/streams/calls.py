"""Pages and screens: page and screen calls, sent as `[Segment Page] <name>` and
`[Segment Screen] <name>` tracks (mapping.md, Pages, screens and groups)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from connect_sync.flows.context import RunContext
from connect_sync.flows.streams.messages import MessageStream
from connect_sync.transforms.events import TrackPayloads
from connect_sync.transforms.pages import page_payloads
from connect_sync.warehouse.segment import Window


class CallsStream(MessageStream):
    """One track per page (or screen) message id never delivered before; the properties
    are the row's own columns."""

    def __init__(self, table: str) -> None:
        self.name = self.table = self.book = table

    def read(
        self, context: RunContext, window: Window, bounds: dict[str, Any] | None
    ) -> pd.DataFrame:
        if bounds is None:
            return context.source.calls(self.table, window)
        return context.source.calls_in_slice(self.table, window, bounds)

    def build(self, part: pd.DataFrame, at: np.ndarray, prepared: Any) -> TrackPayloads:
        return page_payloads(part, self.table)
