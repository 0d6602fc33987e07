"""The transcription job against a plain whisper loop on the same 10 clips, in one run.

R = time of the job (model from the store, outputs written atomically, progress, interrupt
checks) / a plain loop (load the model once, transcribe each file, write its text), alternated
over two rounds. L = p99 overshoot of a 10 ms sleep on the event loop while the job runs.
W = word error rate of the job's transcripts. Last line:
``{"vs_plain_whisper_ratio": R, "loop_lag_p99_ms": L, "wer": W}``. Goals: R <= 1.05, L <= 50.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ipyjobs import JobManager
from ipyjobs.media import TranscribeJob, whisper_runtime
from ipyjobs.models import ModelEntry, ModelStore
from tests.support.whisper_model import (
    SENTENCES,
    converted_tiny_en,
    sha256_of,
    speak,
    word_error_rate,
)


def plain_loop(model_path: Path, clips: list[Path], out: Path) -> float:
    import whisper
    from whisper.utils import get_writer

    started = time.perf_counter()
    model = whisper.load_model(str(model_path), device="cpu")
    writer = get_writer("txt", str(out))
    for clip in clips:
        result = model.transcribe(str(clip), language="en", fp16=False)
        writer(result, str(clip))
    return time.perf_counter() - started


async def job_run(home: Path, clips_dir: Path, out: Path) -> tuple[float, list[float]]:
    whisper_runtime._models.clear()  # load like the plain loop does
    lags: list[float] = []

    async def watch() -> None:
        while True:
            started = time.perf_counter()
            await anyio.sleep(0.01)
            lags.append(time.perf_counter() - started - 0.01)

    async with JobManager(home) as manager, anyio.create_task_group() as tg:
        tg.start_soon(watch)
        started = time.perf_counter()
        job = TranscribeJob(str(clips_dir), model="tiny.en-test", language="en",
                            formats=["txt"], output_dir=str(out))  # fmt: skip
        summary = await manager.dispatch(job)
        elapsed = time.perf_counter() - started
        tg.cancel_scope.cancel()
    assert summary["done"] == len(SENTENCES), summary
    return elapsed, lags


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        os.environ["XDG_CACHE_HOME"] = str(tmp_path / "cache")
        checkpoint = converted_tiny_en()
        cached = tmp_path / "cache" / "whisper" / "tiny.en-test.pt"
        cached.parent.mkdir(parents=True)
        shutil.copyfile(checkpoint, cached)  # reused from whisper's cache, as users' models are
        home = tmp_path / "home"
        ModelStore(home).register(ModelEntry(
            "whisper", "tiny.en-test", "tiny.en-test.pt", "http://127.0.0.1:9/tiny.en-test.pt",
            sha256_of(checkpoint), checkpoint.stat().st_size,
        ))  # fmt: skip
        clips_dir = tmp_path / "clips"
        clips_dir.mkdir()
        clips = [speak(s, clips_dir / f"clip-{i:02d}.wav") for i, s in enumerate(SENTENCES)]
        (tmp_path / "warm-up").mkdir()
        plain_loop(cached, clips, tmp_path / "warm-up")  # imports, torch kernels, page cache
        ratios, all_lags, wers = [], [], []
        for round_ in range(2):
            plain_out, job_out = tmp_path / f"plain-{round_}", tmp_path / f"job-{round_}"
            plain_out.mkdir()
            if round_ == 0:  # alternate the order, so drift on a noisy machine evens out
                plain = plain_loop(cached, clips, plain_out)
                took, lags = await job_run(home, clips_dir, job_out)
            else:
                took, lags = await job_run(home, clips_dir, job_out)
                plain = plain_loop(cached, clips, plain_out)
            ratios.append(took / plain)
            all_lags += lags
            text = " ".join((job_out / f"clip-{i:02d}.txt").read_text() for i in range(10))
            wers.append(word_error_rate(" ".join(SENTENCES), text))
            print(f"round {round_ + 1}: plain {plain:.2f} s, job {took:.2f} s, "
                  f"ratio {took / plain:.3f}")  # fmt: skip
    lag_p99 = statistics.quantiles(all_lags, n=100)[98] * 1000
    print(f"loop lag p99 {lag_p99:.1f} ms over {len(all_lags)} samples; WER {wers[-1]:.3f}")
    result = {
        "vs_plain_whisper_ratio": round(statistics.median(ratios), 3),
        "loop_lag_p99_ms": round(lag_p99, 1),
        "wer": round(wers[-1], 3),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    anyio.run(main)
