"""``python -m tests.media.run_job KIND PARAMS_JSON [RESUME_ID]``: one media job in its own
process (a second kernel, or one to SIGKILL), reporting JSON lines on stdout."""

from __future__ import annotations

import json
import sys

import anyio

import ipyjobs.media  # noqa: F401  (registers the job kinds)
from ipyjobs import JobManager
from ipyjobs.engine.handle import error_text
from ipyjobs.engine.job import job_class


async def main(kind: str, params: dict, resume: str | None) -> None:
    async with JobManager(tick=0.02, store_interval=0.02) as manager:
        if resume:
            handle = manager.resume(resume)
        else:
            handle = manager.dispatch(job_class(kind).from_params(params))
        print(json.dumps({"id": handle.id}), flush=True)
        result, error = None, None
        try:
            result = await handle
        except Exception as exc:
            error = error_text(exc)
        report = {
            "state": handle.state.value,
            "result": result,
            "error": error,
            "item_errors": [[e.item, e.error] for e in handle.item_errors],
            "log": handle.log_tail,
        }
        print(json.dumps(report), flush=True)


if __name__ == "__main__":
    resume = sys.argv[3] if len(sys.argv) > 3 else None
    anyio.run(main, sys.argv[1], json.loads(sys.argv[2]), resume)
