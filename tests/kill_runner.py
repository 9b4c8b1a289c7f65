"""A fork server for the kill/interrupt suite (tests/test_kill_suite.py).

It imports dreamir once, then for each request read from stdin (a JSON line {"argv", "signal", "delay", "log"})
forks a child that runs `dreamir.cli.main(argv)`, sends it `signal` after `delay` seconds (unless it finished first),
and answers one JSON line {"status": exit code, or -signal number if the signal killed it, "seconds"}. Forking
from a process that has only imported (no OpenMP region run yet) keeps every child a clean CLI process at a
fraction of a fresh interpreter's start-up cost, so hundreds of interruptions fit in a few minutes.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # no thread pool in the parent of the forks
import matplotlib

matplotlib.use("Agg")
import bm25s  # noqa: F401
import ir_measures  # noqa: F401
import matplotlib.pyplot
import sentence_transformers  # noqa: F401
import transformers  # noqa: F401

import dreamir.cli
import dreamir.evaluation.evaluate
import dreamir.retrieval.indexing
import dreamir.trainer


def run(argv: list[str], sig: int | None, delay: float, log: str | None = None) -> dict:
    ready_read, ready_write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: one CLI command, its output to the log
        code = None
        try:
            os.close(ready_read)
            sink = os.open(log or os.devnull, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(sink, 1)
            os.dup2(sink, 2)
            os.write(ready_write, b"1")  # the clock starts as `main` is entered, not at the fork
            code = dreamir.cli.main(argv)
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})  # the command is over
        except BaseException:  # escaping `main` is a failure of the CLI's own handling; after it, a late signal
            if code is None:
                import traceback

                traceback.print_exc()  # into the log the test shows
            code = 99 if code is None else code
        os._exit(code)
    os.close(ready_write)
    os.read(ready_read, 1)  # a fork of a large process takes milliseconds; the delay counts from here
    os.close(ready_read)
    start = time.perf_counter()
    deadline = start + delay
    while sig is not None and time.perf_counter() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.002)
    else:
        if sig is not None:
            os.kill(pid, sig)
        _, status = os.waitpid(pid, 0)
    code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
    return {"status": code, "seconds": time.perf_counter() - start}


def main() -> None:
    for line in sys.stdin:
        request = json.loads(line)
        sig = getattr(signal, request["signal"]) if request.get("signal") else None
        result = run(request["argv"], sig, float(request.get("delay", 0)), request.get("log"))
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
