"""The transcription job against plain loops on the same clips, side by side in one run.

On 10 short clips, over two rounds in alternating order:
  R  = the job with openai-whisper / a plain openai-whisper loop (load the model once,
       transcribe each file, write its text). Goal <= 1.05.
  F  = the job with faster-whisper (int8, a beam of 5, threads = cores: its defaults) / the
       plain openai-whisper loop.
       Goal <= 0.6.
  FW = the same faster-whisper job / a plain faster-whisper loop with the same options.
       Goal <= 1.05.
On one recording of >= 2 minutes made from the clips (concatenated, with short pauses):
  LF = the faster-whisper job with the batched pipeline / the plain openai-whisper loop.
       Goal <= 0.4.
L = p99 overshoot of a 10 ms sleep on the event loop while the jobs run (goal <= 50);
W, WF = word error rates of the two jobs' transcripts (goal WF <= W + 0.02).
Last line: ``{"vs_plain_whisper_ratio": R, "faster_vs_plain_whisper_ratio": F,
"faster_vs_plain_fw_ratio": FW, "long_faster_vs_plain_ratio": LF, "loop_lag_p99_ms": L,
"wer": W, "wer_faster": WF}``.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import wave
from pathlib import Path
from typing import Any

import anyio
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ipyjobs import JobManager
from ipyjobs.media import TranscribeJob, faster_runtime, whisper_runtime
from ipyjobs.media.audio import SAMPLE_RATE, load_audio
from ipyjobs.media.speech import FASTER_BEAM_SIZE
from ipyjobs.models import ModelEntry, ModelStore
from tests.support.whisper_model import (
    SENTENCES,
    converted_tiny_en,
    sha256_of,
    speak,
    word_error_rate,
)

LONG_REPEATS = 5  # 10 clips of ~2.5 s each, five times: a bit over two minutes
LONG_BATCH = 8


def plain_whisper(model_path: Path, clips: list[Path], out: Path) -> float:
    import whisper
    from whisper.utils import get_writer

    started = time.perf_counter()
    model = whisper.load_model(str(model_path), device="cpu")
    writer = get_writer("txt", str(out))
    for clip in clips:
        result = model.transcribe(str(clip), language="en", fp16=False)
        writer(result, str(clip))
    return time.perf_counter() - started


def plain_faster_whisper(folder: Path, clips: list[Path], out: Path) -> float:
    """What a user would write with faster-whisper, with the job's options."""
    from faster_whisper import WhisperModel

    started = time.perf_counter()
    model = WhisperModel(str(folder), device="cpu", compute_type="int8",
                         cpu_threads=faster_runtime.cpu_threads())  # fmt: skip
    for clip in clips:
        segments, _ = model.transcribe(str(clip), language="en", beam_size=FASTER_BEAM_SIZE)
        (out / f"{clip.stem}.txt").write_text("".join(s.text for s in segments))
    return time.perf_counter() - started


async def job_run(home: Path, inputs: Path, out: Path, lags: list[float], **options: Any) -> float:
    whisper_runtime._models.clear()  # load like the plain loops do

    async def watch() -> None:
        while True:
            started = time.perf_counter()
            await anyio.sleep(0.01)
            lags.append(time.perf_counter() - started - 0.01)

    async with JobManager(home) as manager, anyio.create_task_group() as tg:
        tg.start_soon(watch)
        started = time.perf_counter()
        job = TranscribeJob(str(inputs), model="tiny.en-test", language="en",
                            formats=["txt"], output_dir=str(out), **options)  # fmt: skip
        summary = await manager.dispatch(job)
        elapsed = time.perf_counter() - started
        tg.cancel_scope.cancel()
    assert summary["done"] >= 1 and not summary["failed"], summary
    return elapsed


def long_recording(clips: list[Path], out: Path) -> Path:
    """The clips one after the other with half a second of silence, ``LONG_REPEATS`` times."""
    pause = np.zeros(SAMPLE_RATE // 2, dtype=np.float32)
    pieces = [piece for clip in clips for piece in (load_audio(str(clip)), pause)]
    samples = np.concatenate(pieces * LONG_REPEATS)
    with wave.open(str(out), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(SAMPLE_RATE)
        wav.writeframes((samples * 32767).astype(np.int16).tobytes())
    return out


def wer_of(folder: Path) -> float:
    text = " ".join((folder / f"clip-{i:02d}.txt").read_text() for i in range(len(SENTENCES)))
    return word_error_rate(" ".join(SENTENCES), text)


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
        long_dir = tmp_path / "long"
        long_dir.mkdir()
        long = long_recording(clips, long_dir / "recording.wav")
        seconds = len(load_audio(str(long))) / SAMPLE_RATE
        warm = tmp_path / "warm-up"
        warm.mkdir()
        plain_whisper(cached, clips[:2], warm)  # imports, torch kernels, page cache
        lags: list[float] = []
        # converts the model (not timed) and warms faster-whisper up
        await job_run(home, clips[0], warm, lags, backend="faster-whisper")
        folder = ModelStore.at(home).ready_path("faster-whisper/tiny.en-test")
        assert folder is not None
        ratios: dict[str, list[float]] = {"R": [], "F": [], "FW": [], "LF": []}
        wers: list[float] = []
        wers_faster: list[float] = []
        for round_ in range(2):
            out = tmp_path / f"round-{round_}"
            dirs = {k: out / k for k in ("plain", "fw", "job", "faster", "long", "long-job")}
            for d in dirs.values():
                d.mkdir(parents=True)
            steps = {
                "plain": (plain_whisper, cached, clips),
                "fw": (plain_faster_whisper, folder, clips),
                "long": (plain_whisper, cached, [long]),
            }
            jobs = {
                "job": (clips_dir, {"backend": "openai-whisper"}),
                "faster": (clips_dir, {"backend": "faster-whisper"}),
                "long-job": (long, {"backend": "faster-whisper", "batch_size": LONG_BATCH}),
            }
            took: dict[str, float] = {}
            order = [*steps, *jobs] if round_ == 0 else [*jobs, *steps]  # drift evens out
            for name in order:
                if name in steps:
                    loop, model, inputs_list = steps[name]
                    took[name] = loop(model, inputs_list, dirs[name])
                else:
                    inputs, options = jobs[name]
                    took[name] = await job_run(home, inputs, dirs[name], lags, **options)
            ratios["R"].append(took["job"] / took["plain"])
            ratios["F"].append(took["faster"] / took["plain"])
            ratios["FW"].append(took["faster"] / took["fw"])
            ratios["LF"].append(took["long-job"] / took["long"])
            wers.append(wer_of(dirs["job"]))
            wers_faster.append(wer_of(dirs["faster"]))
            print(f"round {round_ + 1}: " + ", ".join(f"{k} {v:.2f} s" for k, v in took.items())
                  + " | " + ", ".join(f"{k} {v[-1]:.3f}" for k, v in ratios.items()))  # fmt: skip
    lag_p99 = statistics.quantiles(lags, n=100)[98] * 1000
    print(f"long recording {seconds:.0f} s; loop lag p99 {lag_p99:.1f} ms over {len(lags)} "
          f"samples; WER {wers[-1]:.3f}, faster {wers_faster[-1]:.3f}")  # fmt: skip
    result = {
        "vs_plain_whisper_ratio": round(statistics.median(ratios["R"]), 3),
        "faster_vs_plain_whisper_ratio": round(statistics.median(ratios["F"]), 3),
        "faster_vs_plain_fw_ratio": round(statistics.median(ratios["FW"]), 3),
        "long_faster_vs_plain_ratio": round(statistics.median(ratios["LF"]), 3),
        "loop_lag_p99_ms": round(lag_p99, 1),
        "wer": round(wers[-1], 3),
        "wer_faster": round(wers_faster[-1], 3),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    anyio.run(main)
