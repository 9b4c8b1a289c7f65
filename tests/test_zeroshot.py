"""Zero-shot LLM retrievers (PromptReps, DiffRetriever) on tiny models, against hand computations."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dreamir.retrieval.zeroshot.sparse import QUANTISATION, hybrid_scores, min_max

TEXTS = ["what causes scurvy in the human", "the heart and blood cells", "brain energy study of mice"]


@pytest.fixture(scope="module")
def masked_lm_dir(tmp_path_factory):
    from dreamir.testing import save_tiny_masked_lm

    return save_tiny_masked_lm(tmp_path_factory.mktemp("tiny-mlm"))


@pytest.fixture(scope="module")
def diff(masked_lm_dir):
    from dreamir.retrieval.zeroshot.encoders import DiffRetriever

    return DiffRetriever(str(masked_lm_dir), words=3)


@pytest.fixture(scope="module")
def promptreps(tiny_llm_dir):
    from dreamir.retrieval.zeroshot.encoders import PromptReps

    return PromptReps(str(tiny_llm_dir))


def test_diffretriever_reads_the_k_mask_positions(diff):
    ids, positions = diff.input_ids(TEXTS[0], "query")
    assert [ids[p] for p in positions] == [diff.mask_id] * 3
    assert ids.count(diff.mask_id) == 3 and ids[0] == diff.tokenizer.cls_token_id
    reps = diff.encode(TEXTS, "query")
    for i, text in enumerate(TEXTS):
        ids, positions = diff.input_ids(text, "query")
        with torch.no_grad():
            states = diff.model(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states[-1][0]
        want = F.normalize(states[positions], dim=-1).numpy()
        np.testing.assert_allclose(reps.dense[i], want, atol=1e-5)
        prompt_rows = F.normalize(states[positions[0] - 3 : positions[0]], dim=-1).numpy()
        assert not np.allclose(reps.dense[i], prompt_rows, atol=1e-3)  # not the prompt's positions


def test_sparse_weights_only_on_the_texts_own_words(diff, promptreps):
    from dreamir.retrieval.zeroshot.sparse import stop_words

    for encoder in (diff, promptreps):
        reps = encoder.encode(TEXTS, "document")
        for text, weights in zip(TEXTS, reps.sparse, strict=True):
            own = set(encoder.vocabulary.text_ids(text))
            assert weights and set(weights) <= own and len(weights) <= 128
            words = {encoder.tokenizer.decode([i]).strip() for i in weights}
            assert not words & stop_words() and words <= set(text.split())
    # The value is the quantised log(1 + relu(logit)) of the max over the K positions (hand check).
    ids, positions = diff.input_ids(TEXTS[1], "document")
    with torch.no_grad():
        logits = diff.model(input_ids=torch.tensor([ids])).logits[0, positions].max(0).values
    weights = diff.encode([TEXTS[1]], "document").sparse[0]
    for vocab_id, value in weights.items():
        assert value == int(QUANTISATION * float(torch.log1p(torch.relu(logits[vocab_id]))))


def test_maxsim_equals_a_hand_computation():
    from dreamir.retrieval.zeroshot.retrieval import maxsim

    rng = np.random.default_rng(0)
    q, d = rng.normal(size=(2, 3, 5)), rng.normal(size=(4, 2, 5))
    hand = np.array(
        [[sum(max(q[a, i] @ d[b, j] for j in range(2)) for i in range(3)) for b in range(4)] for a in range(2)]
    )
    np.testing.assert_allclose(maxsim(q, d, block=3), hand, rtol=1e-5)


def test_hybrid_fusion_equals_a_hand_computation():
    dense = np.array([[0.9, 0.1, 0.5, 0.3]])
    sparse = np.array([[0.0, 8.0, 4.0, 6.0]])
    fused = hybrid_scores(dense, sparse, k=2)
    # dense top-2: docs 0, 2 → normalised 1, 0; sparse top-2: docs 1, 3 → normalised 1, 0.
    np.testing.assert_allclose(fused[0], [0.5, 0.5, 0.0, 0.0])
    assert min_max(np.array([2.0, 2.0])).tolist() == [0.0, 0.0]
    fused = hybrid_scores(dense, sparse, k=4)
    d, s = min_max(dense[0]), min_max(sparse[0])
    np.testing.assert_allclose(fused[0], 0.5 * d + 0.5 * s, rtol=1e-6)
    fused = hybrid_scores(np.array([[0.9, 0.1, 0.5]]), np.array([[0.0, 8.0, 4.0]]), k=1)
    assert np.isneginf(fused[0, 2])  # in neither top-1: not retrieved


def test_promptreps_reads_the_last_prompt_position_despite_padding(promptreps):
    assert not getattr(promptreps.tokenizer, "chat_template", None)
    prompt = promptreps.prompt(TEXTS[0], "query")
    assert prompt.endswith(promptreps.templates["answer_prefix"])  # plain prompt: no chat template
    reps = promptreps.encode(TEXTS, "query", batch_size=3)  # different lengths share a left-padded batch
    for i, text in enumerate(TEXTS):
        ids = promptreps.tokenizer(promptreps.prompt(text, "query"), add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            state = promptreps.model(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states[-1][0, -1]
        np.testing.assert_allclose(reps.dense[i], F.normalize(state, dim=-1).numpy(), atol=1e-5)


def test_promptreps_uses_the_chat_template_when_there_is_one(promptreps, monkeypatch):
    template = (
        "{% for m in messages %}<s>{{ m['content'] }}</s>{% endfor %}{% if add_generation_prompt %}<s>{% endif %}"
    )
    monkeypatch.setattr(promptreps.tokenizer, "chat_template", template, raising=False)
    prompt = promptreps.prompt("heart", "document")
    assert prompt.startswith("<s>") and prompt.endswith("</s><s>" + promptreps.templates["answer_prefix"])


def test_promptreps_several_words_decode_sequentially(tiny_llm_dir, promptreps):
    from dreamir.retrieval.zeroshot.encoders import PromptReps

    three = PromptReps(str(tiny_llm_dir), words=3)
    states, _ = three._batch([three.prompt(t, "query") for t in TEXTS])
    one, _ = promptreps._batch([promptreps.prompt(t, "query") for t in TEXTS])
    assert states.shape[1] == 3
    torch.testing.assert_close(states[:, 0], one[:, 0], atol=1e-5, rtol=1e-5)  # the first word is the 1-word rep


def test_adapters_refuse_remote_code_unless_allowed():
    from dreamir.retrieval.zeroshot.encoders import MASKED_LM, adapter_for

    assert adapter_for("Dream").name == "Dream" and adapter_for("llada").name == "LLaDA"
    assert adapter_for("bert") is MASKED_LM
    with pytest.raises(ValueError, match="--trust-remote-code"):
        adapter_for("llada").load("GSAI-ML/LLaDA-8B-Instruct", torch.float32, trust_remote_code=False)

    class NoMask:
        mask_token_id = None

    assert adapter_for("llada").mask_id(NoMask()) == 126336
    with pytest.raises(ValueError, match="no mask token"):
        MASKED_LM.mask_id(NoMask())


def test_dream_adapter_shifts_logits_to_the_predicted_position():
    from dreamir.retrieval.zeroshot.encoders import adapter_for

    class Out:
        def __init__(self, ids):
            self.logits = torch.arange(ids.shape[1], dtype=torch.float32)[None, :, None].expand(1, -1, 2)
            self.hidden_states = [self.logits]

    _, logits = adapter_for("dream").forward(lambda **kw: Out(kw["input_ids"]), torch.zeros(1, 4), torch.ones(1, 4))
    assert logits[0, :, 0].tolist() == [0.0, 0.0, 1.0, 2.0]


@pytest.mark.parametrize("mode", ["dense", "sparse", "hybrid", "multivector"])
def test_eval_command_runs_zero_shot_models(tmp_path, mode, masked_lm_dir, tiny_llm_dir, capsys):
    from dreamir.cli import main

    from .test_compare import tiny_beir

    folder = tiny_beir(tmp_path / "beir")
    models = ["--model", f"diffretriever:{masked_lm_dir}"]
    if mode != "multivector":
        models += ["--model", f"promptreps:{tiny_llm_dir}"]
    assert main(["eval", "--data", str(folder), *models, "--mode", mode, "--k", "2", "--out", str(tmp_path / "r")]) == 0
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())["models"]
    assert len(metrics) == len(models) // 2
    for values in metrics.values():
        assert 0 <= values["ndcg@10"] <= 1
    if mode == "multivector":
        assert main(["eval", "--data", str(folder), "--model", f"promptreps:{tiny_llm_dir}", "--mode", mode]) == 2
        assert "multivector is DiffRetriever's" in capsys.readouterr().err


def test_zero_shot_models_index_and_search_like_any_model(tmp_path, masked_lm_dir, capsys):
    from dreamir.cli import main

    from .test_compare import tiny_beir

    folder = tiny_beir(tmp_path / "beir")
    spec = f"diffretriever:{masked_lm_dir}"
    assert main(["index", "--data", str(folder), "--model", spec, "--out", str(tmp_path / "idx")]) == 0
    capsys.readouterr()
    assert main(["search", "--index", str(tmp_path / "idx"), "heart blood", "-k", "3"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 3
