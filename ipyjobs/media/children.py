"""Child programs (tesseract, ffmpeg) that stop on cancel and never outlive the kernel.

:func:`run` starts a program and waits for it in the calling worker thread, polling the job's
interrupt token: on cancel the program is killed and reaped before ``JobCancelled`` is raised.

On Linux each child also asks the kernel for ``SIGKILL`` when its parent dies
(``prctl(PR_SET_PDEATHSIG)``): a kernel that is SIGKILLed (or runs out of memory) takes its
tesseract and ffmpeg processes with it instead of leaving them to burn a core for minutes. The
signal is tied to the *thread* that started the child, so a child must be started and waited for
in one call, as :func:`run` does. The request is made by util-linux's ``setpriv``, which then
runs the program, where it is installed (it is on every Debian): Python then starts the child
with ``vfork``. Asking between fork and exec instead (a ``preexec_fn``) forces a real ``fork``,
which copies the page tables of a kernel holding a model: 25 ms more per child at 550 MB.
"""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence

from ..engine import current_token

#: How often a running child checks for cancel, in seconds.
POLL_INTERVAL = 0.05

_PR_SET_PDEATHSIG = 1


def _load_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    return prctl


#: Resolved once at import: between fork and exec only the foreign call itself runs.
_prctl = _load_prctl()


def _die_with(parent: int) -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child die with ``parent`` (None where not supported)."""
    prctl = _prctl
    if prctl is None:
        return None

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the request took effect
            os.kill(os.getpid(), signal.SIGKILL)

    return preexec


#: util-linux's ``setpriv``, which sets the death signal and then runs the program.
_SETPRIV = shutil.which("setpriv") if sys.platform.startswith("linux") else None


def _dying_with_this_process(
    args: Sequence[str], env: Mapping[str, str] | None
) -> tuple[list[str], Callable[[], None] | None]:
    """The command line and ``preexec_fn`` that start ``args`` as a child that dies with us."""
    if _SETPRIV is None:
        return list(args), _die_with(os.getpid())
    program = shutil.which(args[0], path=(os.environ if env is None else env).get("PATH"))
    if program is None:  # as Popen says it, not as setpriv would
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), args[0])
    return [_SETPRIV, "--pdeathsig", "KILL", "--", program, *args[1:]], None


def run(
    args: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    poll: float = POLL_INTERVAL,
) -> subprocess.CompletedProcess[bytes]:
    """Run ``args`` to the end and return it with its stdout and stderr (bytes).

    Cancel: the job's token (``current_token()``) is polled every ``poll`` seconds; once a
    cancel was requested the program is killed and reaped, then ``JobCancelled`` is raised. A
    pause does not stop a running program (jobs pause between files).
    """
    token = current_token()
    command, preexec = _dying_with_this_process(args, env)
    process = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=None if env is None else dict(env),
        preexec_fn=preexec,
    )
    try:
        while True:
            try:
                out, err = process.communicate(timeout=poll)
            except subprocess.TimeoutExpired:
                if token is not None and token.cancelled:
                    token.check()  # raises JobCancelled; the finally clause kills the process
                continue
            return subprocess.CompletedProcess(list(args), process.returncode, out, err)
    finally:
        if process.returncode is None:
            process.kill()
            process.communicate()  # reap it, so no zombie or orphan is left
