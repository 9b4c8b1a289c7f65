from __future__ import annotations

import math

import pytest

from dreamir.config import ConfigError, load_config, parse_override
from dreamir.evaluation.metrics import evaluate_run


def test_defaults_follow_the_method_spec():
    config = load_config()
    assert config.dream.temperature == 0.05 and config.dream.mode == "bias" and config.dream.layout == "separate"
    assert config.heads.count == 16 and config.heads.scoring == "gradient"


def test_unknown_key_and_wrong_type_name_the_key(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  lr: fast\n  batchsize: 4\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    text = str(err.value)
    assert "train.lr" in text and "train.batchsize: unknown key" in text and str(path) in text


def test_overrides_apply_and_are_validated():
    config = load_config(None, dict([parse_override("train.lr=1e-4"), parse_override("dream.mode=reweight")]))
    assert config.train.lr == 1e-4 and config.dream.mode == "reweight"
    with pytest.raises(ConfigError, match=r"dream\.mode"):
        load_config(None, {"dream.mode": "multiply"})
    with pytest.raises(ConfigError, match=r"KEY=VALUE"):
        parse_override("train.lr")


def test_metrics_match_a_hand_computation():
    qrels = {"q1": {"d1": 1, "d3": 1}, "q2": {"d2": 2}}
    run = {"q1": {"d1": 3.0, "d2": 2.0, "d3": 1.0}, "q2": {"d1": 5.0, "d2": 4.0}}
    m = evaluate_run(qrels, run)
    # q1: relevant at ranks 1 and 3; q2: the (grade-2) relevant document at rank 2.
    ndcg_q1 = (1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3))
    ndcg_q2 = (2 / math.log2(3)) / 2  # trec_eval's nDCG uses the grade itself as the gain
    assert m["ndcg@10"] == pytest.approx((ndcg_q1 + ndcg_q2) / 2, abs=1e-6)
    assert m["mrr@10"] == pytest.approx((1 + 1 / 2) / 2)
    assert m["recall@100"] == pytest.approx(1.0)
    assert m["map@100"] == pytest.approx(((1 + 2 / 3) / 2 + 1 / 2) / 2)


def test_queries_missing_from_the_run_count_as_zero():
    qrels = {"q1": {"d1": 1}, "q2": {"d2": 1}}
    m = evaluate_run(qrels, {"q1": {"d1": 1.0}})
    assert m["mrr@10"] == pytest.approx(0.5) and m["ndcg@10"] == pytest.approx(0.5)


def test_public_api_names_resolve():
    import dreamir

    for name in dreamir.__all__:
        assert getattr(dreamir, name) is not None


def test_plain_copy_of_a_gguf_is_keyed_by_content_not_by_install(tmp_path, monkeypatch):
    """Every virtualenv installs the model package at another path with another mtime; they must share
    one de-quantised copy (hundreds of MB to GB each), and a different file must get its own."""
    import os

    from dreamir.assets import plain_copy_dir

    monkeypatch.setenv("DREAMIR_CACHE", str(tmp_path / "cache"))
    first, second, other = (tmp_path / d / "m.Q4.gguf" for d in ("venv-a", "venv-b", "venv-c"))
    for path, content in ((first, b"GGUF weights"), (second, b"GGUF weights"), (other, b"GGUF weightz")):
        path.parent.mkdir()
        path.write_bytes(content)
    os.utime(second, ns=(1, 1))
    assert plain_copy_dir(first) == plain_copy_dir(second)
    assert plain_copy_dir(first) != plain_copy_dir(other)
    assert plain_copy_dir(first).parent == tmp_path / "cache" / "gguf-plain"
    assert plain_copy_dir(first).name.startswith("m.Q4-")


def test_a_cached_copy_has_the_same_name_wherever_the_cache_lives(tmp_path, monkeypatch):
    """Judge-signal and document caches are keyed by the LLM's name: a copy in dreamir's cache must be
    named without the cache's own location, so a signal computed on another machine is found here."""
    from dreamir.assets import ModelSource, portable_name

    names = []
    for home in ("machine-a", "machine-b"):
        monkeypatch.setenv("DREAMIR_CACHE", str(tmp_path / home / "cache"))
        copy = tmp_path / home / "cache" / "gguf-plain" / "m.Q4-0123abcd"
        copy.mkdir(parents=True)
        names.append(portable_name(ModelSource(str(copy))))
    assert names == ["dreamir-cache/gguf-plain/m.Q4-0123abcd"] * 2
    own = tmp_path / "my-model"  # a user's folder, a hub name: named as given
    assert portable_name(ModelSource(str(own), "w.gguf")) == f"{own}::w.gguf"
    assert portable_name(ModelSource("Qwen/Qwen2.5-Coder-0.5B-Instruct")) == "Qwen/Qwen2.5-Coder-0.5B-Instruct"


def test_set_dotted_reaches_into_lists_and_names_bad_keys():
    from dreamir.config import ConfigError, set_dotted

    tree = {"datasets": [{"name": "a", "build": {"max_examples": 1000}}], "train": {"lr": 0.1}}
    set_dotted(tree, "datasets.0.build.max_examples", 3000)
    set_dotted(tree, "train.warmup_steps", 5)
    assert tree["datasets"] == [{"name": "a", "build": {"max_examples": 3000}}]
    assert tree["train"] == {"lr": 0.1, "warmup_steps": 5}
    with pytest.raises(ConfigError, match="'1' is not an index of a 1-item list"):
        set_dotted(tree, "datasets.1.build.max_examples", 1)
    with pytest.raises(ConfigError, match="'lr' is not a section"):
        set_dotted(tree, "train.lr.x", 1)


def test_command_line_flags_take_type_choices_and_default_from_the_schema():
    """Every flag that sets a config key is generated from its pydantic field: the default shown is the schema's
    (defaults live once: `dreamir heads --num-examples` used to say 64 where heads.detection_examples says 32),
    an unset flag leaves the key to the config, and a given one reaches the config typed."""
    from dreamir.cli import BUILD_FLAGS, HEADS_FLAGS, TRAIN_FLAGS, _config_from_args, build_parser, schema_field
    from dreamir.config import RunConfig
    from dreamir.data.text import BuildConfig
    from dreamir.settings import HeadsConfig

    parser = build_parser()
    commands = {action.dest: action for action in parser._subparsers._group_actions}["command"].choices
    generated = [("train", RunConfig, TRAIN_FLAGS), ("build-data", BuildConfig, BUILD_FLAGS)]
    for command, model, flags in [*generated, ("heads", HeadsConfig, HEADS_FLAGS)]:
        helps = {a.option_strings[0]: a for a in commands[command]._actions if a.option_strings}
        for flag, key in flags.items():
            default = schema_field(model, key).get_default(call_default_factory=True)
            assert f"sets {key} (default: {default})" in helps[flag].help, (command, flag)
            assert helps[flag].default is None
    args = parser.parse_args(["train", "--data", "x.jsonl", "--max-steps", "7", "--objective", "dream_distill+infonce"])
    config = _config_from_args(args)
    assert config.train.max_steps == 7 and config.data.train == "x.jsonl"
    assert config.train.objective == "dream_distill + infonce" and config.train.lr == RunConfig().train.lr


def test_a_key_given_twice_in_a_config_is_refused_with_its_lines(tmp_path):
    """yaml keeps the last of two equal keys, silently dropping the first `train:` section; both config readers
    (runs and comparisons) refuse it, naming the file and both lines."""
    from dreamir.apps.compare import load_compare_config
    from dreamir.config import ConfigError, load_config

    path = tmp_path / "dup.yaml"
    path.write_text("train:\n  lr: 0.1\nseed: 1\ntrain:\n  max_steps: 3\n")
    for read in (load_config, load_compare_config):
        with pytest.raises(ConfigError, match=r"dup.yaml: .*key 'train' given twice \(lines 1 and 4\)"):
            read(path)
    nested = tmp_path / "nested.yaml"
    nested.write_text("train:\n  lr: 0.1\n  lr: 0.2\n")
    with pytest.raises(ConfigError, match=r"key 'lr' given twice \(lines 2 and 3\)"):
        load_config(nested)
