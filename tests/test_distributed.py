"""Two processes (torchrun, gloo, DistributedDataParallel) train exactly like one process with the same global batch,
with and without gradient accumulation."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
import torch
import yaml

from .test_trainer import dreamir, final_state, write_config


@pytest.mark.slow
def test_two_processes_match_one_process_with_the_same_global_batch(tmp_path, tiny_llm_dir):
    from dreamir.testing import save_tiny_encoder

    # No dropout, so the retriever is the same function in both runs (dropout masks depend on batch layout).
    encoder = save_tiny_encoder(tmp_path / "encoder", dropout=0.0)
    single = write_config(tmp_path, tiny_llm_dir, encoder, "single", steps=5)
    single.write_text(single.read_text().replace("batch_size: 2", "batch_size: 4"))
    dreamir("train", "--config", str(single))

    shutil.copyfile(tmp_path / "single" / "heads.json", tmp_path / "heads.json")
    double = write_config(tmp_path, tiny_llm_dir, encoder, "double", steps=5)  # 2 processes × batch 2
    accumulated = write_config(tmp_path, tiny_llm_dir, encoder, "accumulated", steps=5)  # 2 × batch 1 × 2 micro
    settings = yaml.safe_load(accumulated.read_text())
    settings["train"].update(batch_size=1, grad_accum=2)
    accumulated.write_text(yaml.safe_dump(settings))
    for port, config in ((29517, double), (29518, accumulated)):
        torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port)]
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
        proc = subprocess.run(
            [*torchrun, "-m", "dreamir.cli", "train", "--config", str(config), "--heads", str(tmp_path / "heads.json")],
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]

    a = final_state(tmp_path / "single")
    for other in ("double", "accumulated"):
        b = final_state(tmp_path / other)
        assert a["step"] == b["step"] == 5
        for name, value in a["retriever"].items():
            torch.testing.assert_close(b["retriever"][name], value, atol=1e-5, rtol=0)
    run = tmp_path / "double"
    assert [line.count('"step"') for line in (run / "log.jsonl").read_text().splitlines()] == [1] * 5  # rank 0 only
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-0000004.pt", "step-0000005.pt"]
    assert (run / "retriever" / "modules.json").exists()
