"""Jobs that need models, as media jobs will."""

from __future__ import annotations

from dataclasses import dataclass

from ipyjobs import Job, JobContext
from ipyjobs.models import ensure_model, ensure_tessdata


@dataclass
class NeedsModel(Job, kind="test.needs_model"):
    model: str

    async def run(self, ctx: JobContext) -> str:
        return str(await ensure_model(ctx, self.model))


@dataclass
class NeedsTessdata(Job, kind="test.needs_tessdata"):
    languages: str

    async def run(self, ctx: JobContext) -> str:
        return str(await ensure_tessdata(ctx, self.languages))
