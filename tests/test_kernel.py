"""ipyjobs in a real Jupyter kernel: jobs run on the kernel's loop while cells keep answering.

A kernel (ipykernel, started by jupyter_client with this venv's python) runs the cells below
one by one through a blocking client, as a notebook front end would send them.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from jupyter_client import BlockingKernelClient, KernelManager
from jupyter_client.kernelspec import KernelSpecManager

from ipyjobs import JobManager, JobState

pytestmark = pytest.mark.timeout(120)

KERNEL_NAME = "ipyjobs-test"

#: Defines the test job in the kernel: it sleeps ``seconds`` in checkpointed steps.
DEFINE_JOB = textwrap.dedent(
    """
    import asyncio
    import time
    from dataclasses import dataclass

    import ipyjobs

    @dataclass
    class KernelSleep(ipyjobs.Job, kind="kernel_test.sleep"):
        seconds: float
        step: float = 0.02

        def __post_init__(self):
            self.steps_done = 0

        async def run(self, ctx):
            steps = max(1, round(self.seconds / self.step))
            for i in range(steps):
                await ctx.checkpoint()
                await asyncio.sleep(self.step)
                self.steps_done += 1
                ctx.progress(i + 1, steps)
            return f"slept {self.seconds:g} s"

    @dataclass
    class KernelThreadSteps(ipyjobs.Job, kind="kernel_test.thread_steps"):
        steps: int

        def run_steps(self):
            for _ in range(self.steps):
                ipyjobs.current_token().check()
                time.sleep(0.02)

        async def run(self, ctx):
            await ctx.run_sync(self.run_steps)
            return "done"
    """
)


@dataclass
class Cell:
    """What one executed cell gave back."""

    code: str
    status: str
    result: str | None = None
    """``text/plain`` of the execute_result, if any."""
    stdout: str = ""
    ename: str | None = None
    evalue: str | None = None
    elapsed: float = 0.0
    messages: list[dict] = field(default_factory=list)


@dataclass
class Kernel:
    client: BlockingKernelClient
    home: Path

    def run(self, code: str, *, timeout: float = 30.0, ok: bool = True) -> Cell:
        """Execute ``code`` as a cell, wait until the kernel is idle again, collect outputs."""
        cell = Cell(code, status="?")

        def on_output(msg: dict) -> None:
            cell.messages.append(msg)
            kind, content = msg["msg_type"], msg["content"]
            if kind == "execute_result":
                cell.result = content["data"].get("text/plain")
            elif kind == "stream" and content["name"] == "stdout":
                cell.stdout += content["text"]
            elif kind == "error":
                cell.ename, cell.evalue = content["ename"], content["evalue"]

        started = time.monotonic()
        reply = self.client.execute_interactive(
            code, timeout=timeout, output_hook=on_output, allow_stdin=False
        )
        cell.elapsed = time.monotonic() - started
        cell.status = reply["content"]["status"]
        if reply["content"]["status"] == "error":
            cell.ename = reply["content"]["ename"]
            cell.evalue = reply["content"]["evalue"]
        if ok:
            assert cell.status == "ok", f"cell failed: {cell.ename}: {cell.evalue}\n{code}"
        return cell

    def value(self, expression: str, **kwargs: float) -> str | None:
        """The repr the kernel shows for ``expression``."""
        return self.run(expression, **kwargs).result


@contextlib.contextmanager
def running_kernel(root: Path) -> Iterator[tuple[Kernel, KernelManager]]:
    """A kernel of this venv's python with ``IPYJOBS_HOME`` under ``root``, shut down on exit
    (politely: a shutdown request, then jupyter_client's terminate/kill after a grace time)."""
    # A kernelspec of our own, so the kernel is this venv's python whatever else is installed.
    spec_dir = root / "kernels" / KERNEL_NAME
    spec_dir.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    spec = {"argv": argv, "display_name": "ipyjobs test", "language": "python"}
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    home = root / "ipyjobs-home"
    specs = KernelSpecManager(kernel_dirs=[str(root / "kernels")])
    assert specs.get_kernel_spec(KERNEL_NAME).argv[0] == sys.executable

    manager = KernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=specs)
    env = {**os.environ, "IPYJOBS_HOME": str(home)}
    manager.start_kernel(env=env)
    try:
        client = manager.client()
        client.start_channels()
        try:
            client.wait_for_ready(timeout=60)
            yield Kernel(client, home), manager
        finally:
            client.stop_channels()
    finally:
        if manager.is_alive():
            manager.shutdown_kernel(now=False)
        assert not manager.is_alive()


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kernel]:
    with running_kernel(tmp_path_factory.mktemp("kernel")) as (kernel, _):
        yield kernel


def test_kernel_is_this_venv(kernel: Kernel) -> None:
    kernel.run("import sys, ipyjobs")
    assert kernel.value("sys.executable") == repr(sys.executable)
    # ipyjobs.jobs() is one manager per kernel loop, kept across cells, homed in IPYJOBS_HOME.
    kernel.run("manager = ipyjobs.jobs()")
    assert kernel.value("ipyjobs.jobs() is manager") == "True"
    assert kernel.value("str(manager.home)") == repr(str(kernel.home))


def test_cells_answer_while_a_job_runs_and_cancel_stops_it(kernel: Kernel) -> None:
    kernel.run(DEFINE_JOB)
    # A plain (not async) cell dispatches and returns at once.
    dispatch = kernel.run(
        "t0 = time.monotonic()\nh = ipyjobs.jobs().dispatch(KernelSleep(3.0))\nh.state.value"
    )
    dispatched_at = time.monotonic()
    assert dispatch.result == "'queued'"
    assert dispatch.elapsed < 1.0

    two = kernel.run("1+1")
    assert two.result == "2"
    assert two.elapsed < 1.5, f"1+1 took {two.elapsed:.2f} s while the job ran"

    # Right after, in the kernel: the job is running, and it started well before its end.
    assert kernel.value("h.state.value") == "'running'"
    assert time.monotonic() - dispatched_at < 2.0
    assert kernel.value("time.monotonic() - t0 < 2.0") == "True"

    # The job goes on while the kernel is idle between cells.
    time.sleep(0.5)
    assert kernel.value("h.job.steps_done > 0") == "True"
    assert kernel.value("h.state.value") == "'running'"

    assert kernel.value("h.cancel()") == "True"
    assert kernel.value("(await h.join()).value") == "'cancelled'"
    assert kernel.value("h.state.value") == "'cancelled'"
    # Cancelled well before the 3 s sleep (150 steps) could have ended; the body stopped.
    assert kernel.value("h.job.steps_done < 150") == "True"
    kernel.run("stopped_at = h.job.steps_done")
    time.sleep(0.2)
    assert kernel.value("h.job.steps_done == stopped_at") == "True"

    # Awaiting a cancelled job raises JobCancelled in the cell.
    failed = kernel.run("await h", ok=False)
    assert failed.status == "error"
    assert failed.ename == "JobCancelled"


def test_await_in_a_cell_gives_the_output(kernel: Kernel) -> None:
    kernel.run(DEFINE_JOB)
    kernel.run("h2 = ipyjobs.jobs().dispatch(KernelSleep(0.3))")
    cell = kernel.run('print("output:", await h2)')
    assert cell.stdout == "output: slept 0.3 s\n"
    assert kernel.value("h2.state.value") == "'completed'"
    assert kernel.value("h2.progress.fraction") == "1.0"


def test_shutdown_is_prompt_and_flushes_the_store(tmp_path: Path) -> None:
    with running_kernel(tmp_path) as (kernel, manager):
        kernel.run(DEFINE_JOB)
        kernel.run("first = ipyjobs.jobs().dispatch(KernelSleep(0.05))")
        # Until the ticker has written the store once, from the writer thread.
        kernel.run(
            "while ipyjobs.jobs().store.get(first.id) is None:\n    await asyncio.sleep(0.05)",
            timeout=10,
        )
        # Worker threads must not hold up the exit: one that ended, one parked in a paused job.
        kernel.run("parked = ipyjobs.jobs().dispatch(KernelThreadSteps(10_000))")
        kernel.run("await asyncio.sleep(0.2)\nparked.pause()\nawait asyncio.sleep(0.2)")
        assert kernel.value("parked.state.value") == "'paused'"
        # Ends right before the shutdown: only the final flush can store its ending.
        kernel.run("last = ipyjobs.jobs().dispatch(KernelThreadSteps(3))\nawait last")
        last_id = kernel.value("last.id").strip("'")
        started = time.monotonic()
        manager.shutdown_kernel(now=False)
        shutdown_took = time.monotonic() - started
    reader = JobManager(kernel.home)  # reads the store the kernel left
    try:
        assert reader.record(last_id).state is JobState.COMPLETED
    finally:
        reader.store.close()
    assert shutdown_took < 2.0


def run_in_subshell(kernel: Kernel, subshell_id: str, code: str, timeout: float = 30) -> Cell:
    """Execute ``code`` in an ipykernel 7 subshell (its own thread and asyncio loop)."""
    client = kernel.client
    content = {"code": code, "silent": False, "store_history": False, "allow_stdin": False}
    msg = client.session.msg("execute_request", content)
    msg["header"]["subshell_id"] = subshell_id
    client.shell_channel.send(msg)
    cell = Cell(code, status="?")
    deadline = time.monotonic() + timeout
    while True:
        reply = client.shell_channel.get_msg(timeout=max(0.1, deadline - time.monotonic()))
        if reply["parent_header"].get("msg_id") == msg["header"]["msg_id"]:
            break
    cell.status = reply["content"]["status"]
    cell.ename, cell.evalue = reply["content"].get("ename"), reply["content"].get("evalue")
    while True:  # the outputs, up to the idle status of this request
        out = client.iopub_channel.get_msg(timeout=max(0.1, deadline - time.monotonic()))
        if out["parent_header"].get("msg_id") != msg["header"]["msg_id"]:
            continue
        if out["msg_type"] == "execute_result":
            cell.result = out["content"]["data"].get("text/plain")
        elif out["msg_type"] == "status" and out["content"]["execution_state"] == "idle":
            break
    assert cell.status == "ok", f"subshell cell failed: {cell.ename}: {cell.evalue}\n{code}"
    return cell


def test_a_subshell_sees_the_kernels_one_manager(kernel: Kernel) -> None:
    kernel.run(DEFINE_JOB)
    kernel.run("main_manager = ipyjobs.jobs()")
    request = kernel.client.session.msg("create_subshell_request", {})
    kernel.client.control_channel.send(request)
    reply = kernel.client.control_channel.get_msg(timeout=10)
    subshell = reply["content"]["subshell_id"]
    thread = run_in_subshell(kernel, subshell, "import threading\nthreading.current_thread().name")
    assert thread.result == repr(f"subshell-{subshell}")
    # The same manager, though the subshell has its own thread and loop.
    same = run_in_subshell(kernel, subshell, "ipyjobs.jobs() is main_manager")
    assert same.result == "True"
    # A dispatch and a cancel from the subshell work; the main shell sees the job.
    run_in_subshell(kernel, subshell, "sub = ipyjobs.jobs().dispatch(KernelSleep(30.0))")
    assert kernel.value("sub in main_manager.handles") == "True"
    kernel.run("while sub.state.value != 'running':\n    await asyncio.sleep(0.02)", timeout=10)
    cancel = run_in_subshell(kernel, subshell, "sub.cancel()")
    assert cancel.result == "True"
    ended = run_in_subshell(kernel, subshell, "(await sub.join()).value")
    assert ended.result == "'cancelled'"
    assert kernel.value("sub.state.value") == "'cancelled'"
    assert kernel.value("sub.job.steps_done < 1500") == "True"
    # The manager lives on for the main shell.
    assert kernel.value("await ipyjobs.jobs().dispatch(KernelSleep(0.05))") == "'slept 0.05 s'"
