"""`dreamir compare` end to end on tiny models: every objective, same data, one table, resumable."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from dreamir.testing import WORDS

from .test_beir_and_eval import make_beir


def tiny_beir(folder):
    rng = np.random.default_rng(0)
    words = WORDS[45:]
    corpus = [
        {"_id": f"d{i}", "title": "", "text": ". ".join(" ".join(rng.choice(words, size=8)) for _ in range(4)) + "."}
        for i in range(16)
    ]
    queries = [{"_id": f"q{i}", "text": " ".join(corpus[i]["text"].split()[:5])} for i in range(4)]
    qrels = "query-id\tcorpus-id\tscore\n" + "".join(f"q{i}\td{i}\t1\n" for i in range(4))
    return make_beir(folder, corpus=corpus, queries=queries, qrels=qrels)


def compare_config(tmp_path, llm_dir, encoder_dir, objectives):
    config = {
        "out": str(tmp_path / "cmp"),
        "track": "adapt",
        "datasets": [
            {"name": "tiny", "beir": str(tiny_beir(tmp_path / "beir")), "build": {"candidates": 3, "chunk_words": 16}}
        ],
        "objectives": objectives,
        "base": {
            "seed": 3,
            "llm": {"name": str(llm_dir)},
            "retriever": {"name": str(encoder_dir)},
            "heads": {"count": 4, "detection_examples": 4},
            "train": {"batch_size": 2, "lr": 1e-3, "warmup_steps": 1, "max_steps": 3, "checkpoint_every": 2},
        },
        "per_objective": {"revela": {"revela": {"temperature": 0.1}}},
    }
    path = tmp_path / "compare.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_compare_trains_every_objective_and_resumes(tmp_path, tiny_llm_dir, tiny_encoder_dir, monkeypatch, capsys):
    from dreamir.cli import main

    monkeypatch.setenv("DREAMIR_CACHE", str(tmp_path / "cache"))
    objectives = ["dream", "replug", "revela", "infonce"]
    path = compare_config(tmp_path, tiny_llm_dir, tiny_encoder_dir, objectives)
    assert main(["compare", "--config", str(path)]) == 0
    out = tmp_path / "cmp"
    results = json.loads((out / "compare.json").read_text())
    rows = results["adapt"]["tiny"]
    assert set(rows) == {"untrained", "bm25", *objectives}
    for name in objectives:
        assert 0 <= rows[name]["ndcg@10"] <= 1 and 0 <= rows[name]["recall@100"] <= 1
        assert rows[name]["steps"] == 3 and rows[name]["train_s"] > 0
        config = yaml.safe_load((out / "tiny" / name / "config.yaml").read_text())
        assert config["train"]["objective"] == name and config["seed"] == 3
        assert config["data"]["train"] == str(out / "tiny" / "train.jsonl")  # the same examples for all
    assert rows["bm25"]["ndcg@10"] > 0.5  # queries copy words of their document
    table = (out / "compare.md").read_text()
    assert all(f"| {name} |" in table for name in rows)
    assert all(row["device"] == f"CPU ({os.cpu_count()} cores)" for row in rows.values())
    assert f"Measured on — tiny: CPU ({os.cpu_count()} cores)." in table
    assert (out / "compare.png").stat().st_size > 1000

    # A second call trains nothing: finished objectives are read back.
    from dreamir import trainer
    from dreamir.apps import compare

    monkeypatch.setattr(trainer.Trainer, "train", lambda *a, **k: pytest.fail("retrained a finished objective"))
    assert main(["compare", "--config", str(path)]) == 0
    assert json.loads((out / "compare.json").read_text()) == results

    # Finished runs copied into another comparison's folder (same settings, same examples) are reused;
    # after an edited training setting they are refused by name, not reported under settings they did not have.
    import shutil

    config = yaml.safe_load(path.read_text())
    copied = yaml.safe_load(path.read_text()) | {"out": str(tmp_path / "copy")}
    shutil.copytree(out / "tiny", tmp_path / "copy" / "tiny")
    copied["base"]["replug"] = {"signal_cache_dir": str(tmp_path / "nll")}  # a cache elsewhere: still reused
    (tmp_path / "copied.yaml").write_text(yaml.safe_dump(copied))
    assert main(["compare", "--config", str(tmp_path / "copied.yaml")]) == 0
    assert not (tmp_path / "nll").exists()  # nothing retrained
    # A section only one objective reads refuses that objective's run and no other's.
    copied["base"]["infonce"] = {"temperature": 0.1}
    (tmp_path / "copied.yaml").write_text(yaml.safe_dump(copied))
    capsys.readouterr()
    assert main(["compare", "--config", str(tmp_path / "copied.yaml")]) == 2
    error = capsys.readouterr().err
    assert f"{tmp_path / 'copy' / 'tiny' / 'infonce'} holds a finished run" in error  # dream, replug, revela reused
    assert "(1 key(s): infonce.temperature: 0.05 → 0.1)" in error
    del copied["base"]["infonce"]
    copied["base"]["train"]["lr"] = 5e-4
    (tmp_path / "copied.yaml").write_text(yaml.safe_dump(copied))
    capsys.readouterr()
    for extra in ([], ["--report-only"]):
        assert main(["compare", "--config", str(tmp_path / "copied.yaml"), *extra]) == 2
        error = capsys.readouterr().err
        assert "trained with other settings" in error and "train.lr: 0.001 → 0.0005" in error

    # A changed evaluation scope (a corpus sample) re-evaluates every model, still training nothing.
    config["datasets"][0]["eval_docs"] = 6
    path.write_text(yaml.safe_dump(config))
    assert main(["compare", "--config", str(path)]) == 0
    sampled = json.loads((out / "compare.json").read_text())["adapt"]["tiny"]
    assert all(row["corpus_docs"] == 6 and row["queries"] == 4 for row in sampled.values())
    assert all(rows[name]["corpus_docs"] == 16 for name in rows)
    assert sampled["dream"]["steps"] == 3 and sampled["dream"]["train_s"] == rows["dream"]["train_s"]
    assert "tiny: 6-document corpus sample" in (out / "compare.md").read_text()
    config["datasets"][0]["eval_seed"] = 1  # same size, other documents: measured again
    path.write_text(yaml.safe_dump(config))
    assert main(["compare", "--config", str(path)]) == 0
    resampled = json.loads((out / "compare.json").read_text())["adapt"]["tiny"]
    assert all(resampled[m]["scope_id"] != sampled[m]["scope_id"] for m in sampled)

    # --report-only reports what is finished on the current scope and computes nothing.
    (out / "tiny" / "replug" / "result.json").unlink()
    monkeypatch.setattr(compare.run, "evaluate_model", lambda *a, **k: pytest.fail("evaluated in report-only"))
    assert main(["compare", "--config", str(path), "--report-only"]) == 0
    reported = json.loads((out / "compare.json").read_text())["adapt"]["tiny"]
    assert reported == {m: row for m, row in resampled.items() if m != "replug"}
    assert "Not finished yet: tiny: replug." in (out / "compare.md").read_text()
    config["datasets"][0]["eval_seed"] = 2  # nothing was measured on this sample
    path.write_text(yaml.safe_dump(config))
    assert main(["compare", "--config", str(path), "--report-only"]) == 0
    assert "nothing finished yet" in capsys.readouterr().out
    assert json.loads((out / "compare.json").read_text())["adapt"]["tiny"] == reported  # left as it was


def test_run_settings_do_not_leak_into_the_shared_base(tmp_path):
    from pathlib import Path

    from dreamir.apps.compare import CompareConfig, run_config

    config = CompareConfig(datasets=[{"name": "d", "beir": "x"}], base={"train": {"lr": 1e-4}})
    run = run_config(config, config.datasets[0], "replug", Path("train.jsonl"))
    assert run.train.objective == "replug" and run.train.lr == 1e-4
    assert config.base == {"train": {"lr": 1e-4}}


def test_control_shuffles_names_whose_targets_only_the_control_runs_shuffle():
    from pathlib import Path

    from dreamir.apps.compare import CompareConfig, run_config

    config = CompareConfig(datasets=[{"name": "d", "beir": "x"}], control_shuffles="llm")
    real, control = (run_config(config, config.datasets[0], "dream_distill", Path("t"), 0, c) for c in (False, True))
    assert (real.data.shuffle_targets, real.data.shuffle_targets_for) == (False, "all")  # reuses earlier runs
    assert (control.data.shuffle_targets, control.data.shuffle_targets_for) == (True, "llm")


def test_a_dataset_is_found_by_name_or_the_error_names_the_ones_there_are():
    from dreamir.apps.compare import CompareConfig
    from dreamir.config import ConfigError

    config = CompareConfig(datasets=[{"name": "a", "beir": "x"}, {"name": "b", "beir": "y"}])
    assert config.dataset("b").beir == "y"
    with pytest.raises(ConfigError, match="no dataset 'c' in the comparison; it has: a, b"):
        config.dataset("c")


def test_compare_config_errors_name_the_key(tmp_path, tiny_llm_dir, tiny_encoder_dir, capsys):
    from dreamir.cli import main

    path = compare_config(tmp_path, tiny_llm_dir, tiny_encoder_dir, ["dream", "sgd"])
    assert main(["compare", "--config", str(path)]) == 2
    assert "objectives.1" in capsys.readouterr().err
    path = compare_config(tmp_path, tiny_llm_dir, tiny_encoder_dir, ["dream"])
    assert main(["compare", "--config", str(path), "--set", "base.train.lr=fast"]) == 2
    assert "train.lr" in capsys.readouterr().err


def test_measured_on_names_methods_only_where_a_dataset_mixes_devices():
    from dreamir.apps.compare.report import measured_on_text

    gpu, cpu = {"device": "GPU X"}, {"device": "CPU (2 cores)"}
    results = {"a": {"dream": cpu, "bm25": cpu}, "b": {"dream": gpu, "replug": gpu, "bm25": cpu, "old": {}}}
    assert measured_on_text(results) == (
        "a: CPU (2 cores); b: GPU X (dream, replug), CPU (2 cores) (bm25), device not recorded (old)"
    )


@pytest.mark.parametrize(
    "name",
    [
        "compare-adapt.yaml",
        "compare-adapt-epoch.yaml",
        "compare-scratch.yaml",
        "compare-scratch-epoch.yaml",
        "../research/configs/learn-dev.yaml",
        "../research/configs/learn-scratch.yaml",
        "../research/configs/lm-student.yaml",
        "../research/configs/fusion-static-dev.yaml",
    ],
)
def test_shipped_compare_configs_validate_for_every_objective(name, tmp_path):
    from pathlib import Path

    from dreamir.apps.compare import load_compare_config, run_config

    config = load_compare_config(Path(__file__).resolve().parents[1] / "configs" / name)
    for dataset in config.datasets:
        for objective in config.objectives:
            run = run_config(config, dataset, objective, tmp_path / "train.jsonl")
            assert run.train.objective == objective


def test_compare_protocol_seeds_control_and_paired_tests(tmp_path, tiny_llm_dir, tiny_encoder_dir, monkeypatch):
    from dreamir.cli import main

    monkeypatch.setenv("DREAMIR_CACHE", str(tmp_path / "cache"))
    path = compare_config(tmp_path, tiny_llm_dir, tiny_encoder_dir, ["infonce"])
    config = yaml.safe_load(path.read_text())
    config.update(seeds=[0, 1], controls=["infonce"], baselines=["untrained"])
    path.write_text(yaml.safe_dump(config))
    assert main(["compare", "--config", str(path)]) == 0
    out = tmp_path / "cmp" / "tiny"
    runs = {
        "infonce": (0, False),
        "infonce-seed1": (1, False),
        "infonce-shuffled": (0, True),
        "infonce-shuffled-seed1": (1, True),
    }
    for folder, (seed, control) in runs.items():
        run = yaml.safe_load((out / folder / "config.yaml").read_text())
        assert run["seed"] == seed and run["data"]["shuffle_targets"] is control
        assert len(json.loads((out / folder / "result.json").read_text())["per_query_ndcg@10"]) == 4
    rows = json.loads((tmp_path / "cmp" / "compare.json").read_text())["adapt"]["tiny"]
    assert set(rows) == {"untrained", "infonce", "infonce-shuffled"}
    row = rows["infonce"]
    per_seed = [json.loads((out / f / "result.json").read_text())["ndcg@10"] for f in ("infonce", "infonce-seed1")]
    assert row["seeds"] == {"0": per_seed[0], "1": per_seed[1]}
    assert row["ndcg@10"] == pytest.approx(np.mean(per_seed)) and row["ndcg@10_std"] == pytest.approx(
        np.std(per_seed, ddof=1)
    )
    assert {"vs_start", "vs_control"} <= set(row) and "vs_control" not in rows["infonce-shuffled"]
    assert row["vs_start"]["mean_difference"] == pytest.approx(row["ndcg@10"] - rows["untrained"]["ndcg@10"])
    assert 0 < row["vs_start"]["p_value"] <= 1 and row["vs_start"]["queries"] == 4
    assert "per_query_ndcg@10" not in row  # kept in the runs' result.json only
    report = (tmp_path / "cmp" / "compare.md").read_text()
    assert "| tiny | infonce | untrained start |" in report and "| tiny | infonce | infonce-shuffled |" in report
    assert "(2 seeds)" in report
    # what run_compare returns (research/scripts/learn.py and bench/compare.py record it) is what compare.json holds
    from dreamir.apps.compare import load_compare_config, run_compare

    assert run_compare(load_compare_config(path), report_only=True)["tiny"] == rows


def test_compare_fuses_every_row_with_bm25_and_tests_it_against_the_fused_start(
    tmp_path, tiny_llm_dir, tiny_encoder_dir, monkeypatch
):
    """`fuse_with: bm25`: rows bm25+untrained and bm25+<objective> (seeds pooled), each fused run equal to what
    `dreamir eval` gives for the same fusion spec (the dataset's own weight over the comparison's); vs_start against
    bm25+untrained, vs_fused_with against bm25; the control gets no fused twin; a second call evaluates nothing."""
    from dreamir.apps.compare import load_compare_config, run_compare
    from dreamir.cli import main
    from dreamir.config import ConfigError
    from dreamir.data.beir import load_beir
    from dreamir.evaluation.evaluate import evaluate_model
    from dreamir.evaluation.significance import paired_test, pooled

    monkeypatch.setenv("DREAMIR_CACHE", str(tmp_path / "cache"))
    path = compare_config(tmp_path, tiny_llm_dir, tiny_encoder_dir, ["infonce"])
    config = yaml.safe_load(path.read_text())
    config.update(seeds=[0, 1], controls=["infonce"], fusion=0.4)
    config["datasets"][0]["fusion"] = 0.4
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(ConfigError, match="datasets tiny set a fusion, but the comparison has no fuse_with"):
        load_compare_config(path)
    config.update(fuse_with="bm25", fusion="rrf")  # the dataset's own weight (chosen on its dev split) wins
    path.write_text(yaml.safe_dump(config))
    assert main(["compare", "--config", str(path)]) == 0
    out = tmp_path / "cmp" / "tiny"
    rows = json.loads((tmp_path / "cmp" / "compare.json").read_text())["adapt"]["tiny"]
    assert set(rows) == {"untrained", "bm25", "infonce", "infonce-shuffled", "bm25+untrained", "bm25+infonce"}
    data = load_beir(tmp_path / "beir", "test")
    seeds = [
        evaluate_model(f"fuse:0.4:bm25+{out / f / 'retriever'}", data, show_progress=False)
        for f in ("infonce", "infonce-seed1")
    ]
    row = rows["bm25+infonce"]
    assert row["seeds"] == {"0": seeds[0].metrics["ndcg@10"], "1": seeds[1].metrics["ndcg@10"]}
    fused_start = json.loads((out / "untrained-fused-fuse-0.4-bm25.json").read_text())["per_query_ndcg@10"]
    both = pooled([s.per_query for s in seeds])
    assert row["vs_start"] == pytest.approx(paired_test(fused_start, both).as_dict())
    bm25 = json.loads((out / "bm25.json").read_text())["per_query_ndcg@10"]
    assert row["vs_fused_with"] == pytest.approx(paired_test(bm25, both).as_dict())
    assert "vs_start" not in rows["bm25+untrained"] and "vs_fused_with" in rows["bm25+untrained"]
    report = (tmp_path / "cmp" / "compare.md").read_text()
    assert "| tiny | bm25+infonce | bm25+untrained |" in report and "| tiny | bm25+infonce | bm25 |" in report
    monkeypatch.setattr("dreamir.apps.compare.run.evaluate_model", lambda *a, **k: pytest.fail("evaluated again"))
    monkeypatch.setattr("dreamir.apps.compare.run.start_retriever", lambda *a, **k: pytest.fail("start built again"))
    assert run_compare(load_compare_config(path))["tiny"] == rows


def test_compare_precompute_stores_every_runs_judge_signal_then_the_comparison_makes_no_judge_pass(
    tmp_path, tiny_llm_dir, tiny_encoder_dir, monkeypatch, capsys
):
    """`dreamir compare --precompute` (e.g. on a GPU) stores the judge signal of each example with its real and its
    shuffled targets, once for every seed (a heads file makes the keys seed-independent), and trains nothing; the
    comparison then trains every run without the judge."""
    from dreamir.cli import main
    from dreamir.objectives import teachers

    monkeypatch.setenv("DREAMIR_CACHE", str(tmp_path / "cache"))
    path = compare_config(tmp_path, tiny_llm_dir, tiny_encoder_dir, ["dream_distill"])
    config = yaml.safe_load(path.read_text())
    config.update(seeds=[0, 1], controls=["dream_distill"], baselines=["untrained"])
    config["base"]["dream_distill"] = {"signal_cache_dir": str(tmp_path / "signal")}
    config["base"]["heads"]["file"] = str(tmp_path / "heads.json")  # not there yet: selected once, then shared
    path.write_text(yaml.safe_dump(config))
    assert main(["compare", "--config", str(path), "--precompute"]) == 0
    printed = capsys.readouterr().out
    examples = sum(1 for _ in (tmp_path / "cmp" / "tiny" / "train.jsonl").open())
    for row in ("dream_distill seed 0", "dream_distill-shuffled seed 0"):
        assert f"tiny {row}: judge signal:" in printed
    assert "seed 1" not in printed  # with a heads file the keys do not depend on the seed
    assert "heads: selected label-free from" in printed and (tmp_path / "heads.json").exists()
    # one key per example and target (real, shuffled): the seeds and the control share the selected heads
    assert len(list((tmp_path / "signal").glob("*.pt"))) == 2 * examples
    assert not list((tmp_path / "cmp").rglob("result.json")) and not (tmp_path / "cmp" / "compare.json").exists()

    monkeypatch.setattr(teachers, "weight_gradient", lambda *a, **k: pytest.fail("the judge ran again"))
    assert main(["compare", "--config", str(path)]) == 0
    rows = json.loads((tmp_path / "cmp" / "compare.json").read_text())["adapt"]["tiny"]
    assert {"dream_distill", "dream_distill-shuffled"} <= set(rows)

    config.update(objectives=["infonce"], controls=[])
    path.write_text(yaml.safe_dump(config))
    assert main(["compare", "--config", str(path), "--precompute"]) == 2
    assert "nothing to precompute" in capsys.readouterr().err


def test_compare_without_labels_scores_the_methods_with_the_label_free_check(
    tmp_path, tiny_llm_dir, tiny_encoder_dir, monkeypatch
):
    """Issue 35 item 3: a dataset with `split: null` (no qrels) is scored on the check's written questions, its
    training data's source documents left out; rows and paired tests work as with real judgements."""
    import dreamir.data.questions as questions
    from dreamir.cli import main

    monkeypatch.setenv("DREAMIR_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(
        questions, "load_generator", lambda config: lambda ps: [f"about {p.split()[0]} {p.split()[1]}" for p in ps]
    )
    path = compare_config(tmp_path, tiny_llm_dir, tiny_encoder_dir, ["infonce"])
    config = yaml.safe_load(path.read_text())
    beir = Path(config["datasets"][0]["beir"])
    shutil.rmtree(beir / "qrels")  # no labels at all
    (beir / "queries.jsonl").unlink()
    config["datasets"][0].update(split=None, check={"sample": 16, "min_words": 5})
    config["datasets"][0]["build"]["max_examples"] = 6  # some documents stay out of the training data
    config.update(baselines=["untrained"])
    path.write_text(yaml.safe_dump(config))
    assert main(["compare", "--config", str(path)]) == 0
    rows = json.loads((tmp_path / "cmp" / "compare.json").read_text())["adapt"]["tiny"]
    assert set(rows) == {"untrained", "infonce"} and "vs_start" in rows["infonce"]
    train_sources = {json.loads(line)["source"] for line in (tmp_path / "cmp" / "tiny" / "train.jsonl").open()}
    judged = json.loads((tmp_path / "cmp" / "tiny" / "untrained.json").read_text())["per_query_ndcg@10"]
    assert judged and not {q.removeprefix("check-") for q in judged} & train_sources
