from __future__ import annotations

import numpy as np
import pytest
import torch

from dreamir.models.retriever import Retriever
from dreamir.settings import LoraConfig

TEXTS = ["what causes scurvy", "vitamin c deficiency causes scurvy in patients", "the heart"]


def st_embeddings(path, texts, kind):
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(path), device="cpu")
    return model.encode(texts, prompt_name=kind, convert_to_numpy=True)


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_encoder_export_reproduces_embeddings(tiny_encoder_dir, tmp_path, pooling):
    retriever = Retriever.load(str(tiny_encoder_dir), pooling=pooling)
    assert retriever.query_prefix == "query: " and retriever.doc_prefix == "passage: "
    ours_q = retriever.encode(TEXTS, "query")
    ours_d = retriever.encode(TEXTS, "document")
    assert np.allclose(np.linalg.norm(ours_q, axis=1), 1, atol=1e-5)
    assert not np.allclose(ours_q, ours_d)  # the prefixes matter
    out = retriever.export(tmp_path / "export")
    np.testing.assert_allclose(st_embeddings(out, TEXTS, "query"), ours_q, atol=1e-5)
    np.testing.assert_allclose(st_embeddings(out, TEXTS, "document"), ours_d, atol=1e-5)


def test_decoder_lasttoken_appends_eos_and_exports(tiny_llm_dir, tmp_path):
    retriever = Retriever.load(str(tiny_llm_dir), query_prefix="", doc_prefix="")
    tok = retriever.st[0].tokenizer
    assert tok("the heart")["input_ids"][-1] == tok.eos_token_id
    ours = retriever.encode(TEXTS, "query")
    out = retriever.export(tmp_path / "export")
    np.testing.assert_allclose(st_embeddings(out, TEXTS, "query"), ours, atol=1e-5)


def test_instruct_decoder_embeds_plain_text_not_a_chat(tiny_llm_dir, tmp_path):
    import shutil

    from transformers import AutoTokenizer

    folder = tmp_path / "chatty"
    shutil.copytree(tiny_llm_dir, folder)
    tok = AutoTokenizer.from_pretrained(folder)
    tok.chat_template = "{% for m in messages %}<s> what {{ m['content'] }} </s>{% endfor %}"
    tok.save_pretrained(folder)
    retriever = Retriever.load(str(folder), query_prefix="", doc_prefix="")
    ids = retriever.st.preprocess(["the heart"])["input_ids"][0].tolist()
    plain = tok("the heart", add_special_tokens=False)["input_ids"]
    assert ids == [*plain, tok.eos_token_id]  # no chat wrapping, EOS appended for last-token pooling
    out = retriever.export(tmp_path / "export")
    np.testing.assert_allclose(st_embeddings(out, TEXTS, "query"), retriever.encode(TEXTS, "query"), atol=1e-5)


def test_lora_trains_only_adapters_and_export_merges(tiny_encoder_dir, tmp_path):
    retriever = Retriever.load(
        str(tiny_encoder_dir), lora=LoraConfig(r=4, alpha=8, dropout=0.0, target_modules=["query", "value"])
    )
    trainable = [n for n, p in retriever.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    with torch.no_grad():  # move the adapters off their zero init so merging matters
        for name, p in retriever.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    ours = retriever.encode(TEXTS, "document")
    out = retriever.export(tmp_path / "export")
    assert not any("lora" in f.name for f in out.rglob("*.safetensors"))
    np.testing.assert_allclose(st_embeddings(out, TEXTS, "document"), ours, atol=1e-5)


def test_embed_is_differentiable_and_state_round_trips(tiny_encoder_dir):
    retriever = Retriever.load(str(tiny_encoder_dir))
    emb = retriever.embed(TEXTS[:2], "query")
    (emb[0] @ emb[1]).backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in retriever.parameters())
    state = retriever.trainable_state()
    other = Retriever.load(str(tiny_encoder_dir))
    with torch.no_grad():
        for p in other.parameters():
            p.add_(1.0)
    other.load_trainable_state(state)
    np.testing.assert_allclose(other.encode(TEXTS, "query"), retriever.encode(TEXTS, "query"), atol=1e-6)
    with pytest.raises(ValueError, match="does not match"):
        other.load_trainable_state({"nope": torch.zeros(1)})


def test_missing_model_path_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        Retriever.load(str(tmp_path / "absent-model"))


def test_static_retriever_is_the_mean_of_the_models_input_embeddings(tiny_encoder_dir, tmp_path):
    """Reference: a text's embedding is the L2-normalised mean of the base model's input-embedding rows of
    its tokens (no special tokens, no prefix); training changes only the rows of tokens it saw; the export
    reloads as the same static model."""
    from transformers import AutoModel, AutoTokenizer

    retriever = Retriever.load(str(tiny_encoder_dir), architecture="static")
    assert retriever.is_static and not retriever.uses_lora
    assert retriever.query_prefix == "" and retriever.doc_prefix == ""
    tokenizer = AutoTokenizer.from_pretrained(tiny_encoder_dir)
    table = AutoModel.from_pretrained(tiny_encoder_dir).get_input_embeddings().weight.detach()
    for text in TEXTS:
        mean = table[tokenizer(text, add_special_tokens=False)["input_ids"]].mean(0)
        expected = (mean / mean.norm()).numpy()
        np.testing.assert_allclose(retriever.encode([text], "query")[0], expected, atol=1e-5)

    emb = retriever.embed(TEXTS[:2], "query")
    (emb[0] @ emb[1]).backward()
    grad_rows = retriever.st[0].embedding.weight.grad.abs().sum(1).nonzero().flatten().tolist()
    seen = {i for t in TEXTS[:2] for i in tokenizer(t, add_special_tokens=False)["input_ids"]}
    assert set(grad_rows) == seen

    with torch.no_grad():
        retriever.st[0].embedding.weight.add_(torch.randn_like(retriever.st[0].embedding.weight))
    out = retriever.export(tmp_path / "static")
    reloaded = Retriever.load(str(out))
    assert reloaded.is_static
    np.testing.assert_allclose(reloaded.encode(TEXTS, "document"), retriever.encode(TEXTS, "document"), atol=1e-5)
    np.testing.assert_allclose(st_embeddings(out, TEXTS, "document"), retriever.encode(TEXTS, "document"), atol=1e-5)


def test_static_retriever_refuses_lora_and_pooling(tiny_encoder_dir):
    with pytest.raises(ValueError, match="LoRA"):
        Retriever.load(str(tiny_encoder_dir), architecture="static", lora=LoraConfig(r=4, alpha=8))
    with pytest.raises(ValueError, match="pooling"):
        Retriever.load(str(tiny_encoder_dir), architecture="static", pooling="cls")
