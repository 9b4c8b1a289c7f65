"""Kill and interrupt suite: SIGKILL, SIGTERM and SIGINT at random moments of train, eval, index and export.

Each command runs over an existing output (an older report, index or export) and is hit with each signal at
DREAMIR_KILL_SUITE_RUNS (default 20) random moments drawn over its uninterrupted duration. After every hit:
- the output is the old one or the new one, whole, never a mix (compared file by file with both references);
- SIGTERM / SIGINT end the command with exit code 130 (or 0 if it had finished), never a traceback, and leave no
  temp file beside the output; SIGKILL ends it with -9 (or 0);
- an interrupted training, resumed with `--resume`, ends with weights identical to an uninterrupted run.
Children are forked from one process that has imported dreamir once (tests/kill_runner.py), so the whole suite
takes a few minutes on 2 cores.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from .test_beir_and_eval import CORPUS, QUERIES, make_beir
from .test_trainer import final_state, write_config

RUNS = int(os.environ.get("DREAMIR_KILL_SUITE_RUNS", "20"))
STEPS = 6
# Signals come once `main` has been entered (the runner's clock starts then): one sent during an interpreter's own
# start-up, before any program code runs, ends any Python program by the signal's default action.
STARTED = 0.001
SIGNALS = ["SIGKILL", "SIGTERM", "SIGINT"]


class Runner:
    def __init__(self, tmp_path: Path):
        self.log = tmp_path / "last-command.log"
        env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "DREAMIR_CACHE": str(tmp_path / "cache")}
        script = Path(__file__).with_name("kill_runner.py")
        self.proc = subprocess.Popen(
            [sys.executable, str(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
        )

    def __call__(self, argv: list[str], signal: str | None = None, delay: float = 0.0) -> dict:
        assert self.proc.stdin and self.proc.stdout
        request = {"argv": [str(a) for a in argv], "signal": signal, "delay": delay, "log": str(self.log)}
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        result = json.loads(self.proc.stdout.readline())
        result["output"] = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
        return result

    def ok(self, argv: list) -> dict:
        result = self(argv)
        assert result["status"] == 0, f"{argv}: {result['output']}"
        return result

    def close(self) -> None:
        assert self.proc.stdin
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


@pytest.fixture
def runner(tmp_path):
    run = Runner(tmp_path)
    yield run
    run.close()


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file of a folder (recursively) by relative path; {} when there is no folder."""
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def assert_old_or_new(folder: Path, old: dict, new: dict, volatile: tuple[str, ...] = ()) -> str:
    now = {k: v for k, v in snapshot(folder).items() if not k.startswith(volatile)}
    strip = lambda s: {k: v for k, v in s.items() if not k.startswith(volatile)}  # noqa: E731
    if now == strip(old):
        return "old"
    assert now == strip(new), f"{folder} is neither the old nor the new output: {sorted(now)}"
    return "new"


def check_status(result: dict, signal: str, seen: str) -> None:
    """SIGKILL: -9 (or 0 when it came too late). SIGTERM / SIGINT: 130, or 0 when too late; a signal that lands
    after the command's work, as it returns, may end the process by the default action (-15), but only with the
    new output whole. 99: an exception escaped the CLI."""
    allowed = {0, -9} if signal == "SIGKILL" else {0, 130} | ({-15} if seen == "new" else set())
    assert result["status"] in allowed, f"{signal}: exit status {result['status']} ({seen}): {result['output']}"


def no_temps_beside(folder: Path) -> None:
    left = [p.name for p in folder.parent.iterdir() if p.name.startswith(f".{folder.name}.")]
    assert not left, f"temp files left beside {folder}: {left}"


def hits(duration: float, seed: int) -> list[tuple[str, float]]:
    rng = random.Random(seed)
    # RUNS random moments per signal, the last one after the command has ended (a signal that comes too late)
    return [(signal, rng.uniform(STARTED, duration) if i < RUNS - 1 else 2 * duration + 0.5)
            for signal in SIGNALS for i in range(RUNS)]  # fmt: skip


@pytest.mark.slow
def test_output_folders_are_old_or_new_after_any_signal(tmp_path, runner, tiny_encoder_dir, tiny_llm_dir):
    old_data = make_beir(tmp_path / "old", CORPUS, QUERIES)
    new_corpus = [{"_id": f"n{i}", "title": "", "text": d["text"]} for i, d in enumerate([*CORPUS, *CORPUS])]
    new_data = make_beir(tmp_path / "new", new_corpus, QUERIES, "query-id\tcorpus-id\tscore\nq1\tn0\t1\nq2\tn1\t1\n")
    # two finished runs whose exports differ (the old and the new export)
    runs = {}
    for name, seed in (("run-a", 1), ("run-b", 2)):
        config = write_config(tmp_path, tiny_llm_dir, tiny_encoder_dir, name, steps=2)
        runner.ok(["train", "--config", config, "--seed", seed, "--objective", "infonce"])
        runs[name] = tmp_path / name
    out = tmp_path / "out"
    from dreamir.evaluation.report import REPORT_MARKER
    from dreamir.files import recover_interrupted_swap
    from dreamir.models.retriever import EXPORT_MARKER

    markers = {"eval": REPORT_MARKER, "index": "meta.json", "export": EXPORT_MARKER}
    commands = {
        # name: (the old output's command, the interrupted command, volatile files that differ run to run)
        "eval": (
            ["eval", "--data", old_data, "--model", "bm25", "--out", out / "eval"],
            ["eval", "--data", new_data, "--model", "bm25", "--model", tiny_encoder_dir, "--out", out / "eval"],
            ("metrics.json", "report.md", "comparison.png"),  # hold seconds: compared by content below
        ),
        "index": (
            ["index", "--data", old_data, "--model", tiny_encoder_dir, "--out", out / "index"],
            ["index", "--data", new_data, "--model", tiny_encoder_dir, "--out", out / "index"],
            (),
        ),
        "export": (
            ["export", "--run", runs["run-a"], "--out", out / "export"],
            ["export", "--run", runs["run-b"], "--out", out / "export"],
            (),
        ),
    }
    outcomes: dict[str, set[str]] = {}
    for name, (make_old, make_new, volatile) in commands.items():
        folder = Path(make_old[-1])
        # the two references, and how long the interrupted command takes when left alone
        runner.ok(make_new)
        new = snapshot(folder)
        shutil.rmtree(folder)
        runner.ok(make_old)
        old = snapshot(folder)
        pristine = tmp_path / f"pristine-{name}"
        shutil.copytree(folder, pristine)  # the old output, put back before each hit
        duration = runner.ok(make_new)["seconds"]
        print(f"{name}: {duration:.2f} s uninterrupted")
        old_or_new_bars = {
            "old": old.get("report.md", b"").decode().count("|"),
            "new": new.get("report.md", b"").decode().count("|"),
        }
        for number, (signal, delay) in enumerate(hits(duration, seed=len(name))):
            shutil.rmtree(folder)
            shutil.copytree(pristine, folder)
            for left in folder.parent.glob(f".{folder.name}.*"):  # what an earlier SIGKILL left (checked apart)
                shutil.rmtree(left) if left.is_dir() else left.unlink()
            result = runner(make_new, signal, delay)
            if signal == "SIGKILL":  # killed between the swap's two renames: the next reader puts a folder back
                recover_interrupted_swap(folder, markers[name])
            seen = assert_old_or_new(folder, old, new, volatile)
            check_status(result, signal, seen)
            if volatile:  # a report: its run.trec and metrics.json's metric values say which it is
                metrics = json.loads((folder / "metrics.json").read_text())
                expected = json.loads((new if seen == "new" else old)["metrics.json"])
                assert metrics["models"].keys() == expected["models"].keys(), (name, number)
                assert metrics["per_query_ndcg@10"] == expected["per_query_ndcg@10"], (name, number)
                assert (folder / "report.md").read_text().count("|") == old_or_new_bars[seen], (name, number)
            if signal != "SIGKILL":
                no_temps_beside(folder)
            outcomes.setdefault(name, set()).add(seen)
    assert all(seen == {"old", "new"} for seen in outcomes.values()), outcomes  # both ends were really hit


@pytest.mark.slow
def test_training_interrupted_at_any_moment_resumes_to_the_same_weights(
    tmp_path, runner, tiny_encoder_dir, tiny_llm_dir
):
    from dreamir.testing import save_tiny_encoder

    encoder = save_tiny_encoder(tmp_path / "encoder", dropout=0.0)

    def config_for(name: str) -> Path:
        path = write_config(tmp_path, tiny_llm_dir, encoder, name, steps=STEPS)
        settings = yaml.safe_load(path.read_text())
        settings["heads"]["file"] = str(tmp_path / "heads.json")  # every run shares one head set
        settings["train"]["tensorboard"] = False
        path.write_text(yaml.safe_dump(settings))
        return path

    selecting = write_config(tmp_path, tiny_llm_dir, encoder, "selecting", steps=1)
    runner.ok(["train", "--config", selecting])
    shutil.copyfile(tmp_path / "selecting" / "heads.json", tmp_path / "heads.json")
    first = runner.ok(["train", "--config", config_for("straight")])
    print(f"train: {first['seconds']:.2f} s uninterrupted")
    reference = final_state(tmp_path / "straight")["retriever"]
    kinds = set()
    for number, (signal, delay) in enumerate(hits(first["seconds"], seed=7)):
        config = config_for(f"hit-{number}")
        result = runner(["train", "--config", config], signal, delay)
        finished = (tmp_path / f"hit-{number}" / "retriever" / "modules.json").exists()
        check_status(result, signal, "new" if finished else "old")
        kinds.add("finished" if result["status"] == 0 else "interrupted")
        runner.ok(["train", "--config", config, "--resume"])
        state = final_state(tmp_path / f"hit-{number}")
        assert state["step"] == STEPS
        for key, value in reference.items():
            torch.testing.assert_close(state["retriever"][key], value, atol=1e-6, rtol=0, msg=f"{number} {signal}")
        shutil.rmtree(tmp_path / f"hit-{number}")
    assert kinds == {"finished", "interrupted"}
