"""Zero-shot LLM retrievers (docs/method.md): PromptReps (causal LM) and DiffRetriever (masked / diffusion LM).

Both turn a text into a prompt, run the LM, and read at the answer position(s):
- dense: the last layer's hidden state(s), L2-normalised;
- sparse: log(1 + relu(logits)) on the text's own word tokens (retrieval/zeroshot/sparse.py).

PromptReps reads the position after `answer_prefix` (one word); with `words > 1` it decodes greedily
and reads one position per generated token (sequential). DiffRetriever appends K mask tokens and
reads all K positions from ONE bidirectional forward pass.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from tqdm.auto import tqdm

from dreamir.retrieval.zeroshot.sparse import WordVocabulary, sparse_weights

TextKind = str  # "query" | "document"


def load_templates(path: str | os.PathLike | None = None) -> dict:
    """The prompt templates: the packaged file, or a user's copy with the same keys."""
    if path is None:
        text = resources.files("dreamir").joinpath("resources/zeroshot_templates.yaml").read_text()
        source = "packaged zeroshot_templates.yaml"
    else:
        text, source = Path(path).read_text(), str(path)
    templates = yaml.safe_load(text) or {}
    needed = {"promptreps": ("query", "document", "answer_prefix"), "diffretriever": ("query", "document", "tail")}
    for method, keys in needed.items():
        missing = [k for k in keys if not isinstance(templates.get(method, {}).get(k), str)]
        if missing:
            raise ValueError(f"{source}: templates.{method} needs string keys {missing}")
    return templates


@dataclass
class Representations:
    dense: np.ndarray  # (n, H), or (n, K, H) per-position vectors (each L2-normalised)
    sparse: list[dict[int, int]] = field(default_factory=list)
    seconds: float = 0.0

    def pooled(self) -> np.ndarray:
        """One vector per text: the normalised mean of its K vectors."""
        if self.dense.ndim == 2:
            return self.dense
        mean = self.dense.mean(axis=1)
        return mean / np.maximum(np.linalg.norm(mean, axis=-1, keepdims=True), 1e-12)


def _truncate(tokenizer, text: str, max_tokens: int) -> str:
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return text if len(ids) <= max_tokens else tokenizer.decode(ids[:max_tokens])


def _resolve(name: str) -> str:
    from dreamir.assets import plain_model_source

    return plain_model_source(name).name_or_path


class _PromptEncoder:
    """What both zero-shot encoders share: loading, templates, K, the word vocabulary."""

    method = ""
    default_words = 1
    keeps_positions = False  # keep all K vectors per text (multi-vector scoring) instead of their mean

    def __init__(
        self,
        name: str,
        templates: dict | None = None,
        words: int | None = None,
        device: str = "cpu",
        dtype: torch.dtype = torch.float32,
        max_text_tokens: int = 256,
        trust_remote_code: bool = False,
    ) -> None:
        from transformers import AutoTokenizer

        path = _resolve(name)
        self._load(path, dtype, trust_remote_code)
        self.model.to(device).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
        self.templates = (templates or load_templates())[self.method]
        self.words = words or self.default_words
        self.device, self.max_text_tokens = device, max_text_tokens
        self.vocabulary = WordVocabulary(self.tokenizer)
        self._prepare()

    def _load(self, path: str, dtype: torch.dtype, trust_remote_code: bool) -> None:
        raise NotImplementedError

    def _prepare(self) -> None:
        """Checks and settings that need the tokenizer."""

    def _answer_states(self, texts: list[str], kind: TextKind) -> tuple[torch.Tensor, torch.Tensor]:
        """Last-layer states (B, K, H) and logits (B, K, V) at the K answer positions of each text."""
        raise NotImplementedError

    def encode(
        self, texts: list[str], kind: TextKind, batch_size: int = 8, show_progress: bool = False
    ) -> Representations:
        """Dense vectors and sparse weights of `texts`. DiffRetriever keeps its K vectors per text
        (for MaxSim); PromptReps keeps their normalised mean (one word: the state itself)."""
        start = time.perf_counter()
        vectors: np.ndarray | None = None
        sparse: list[dict[int, int]] = [{} for _ in texts]
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # similar lengths share a batch
        for b in tqdm(range(0, len(texts), batch_size), desc=f"{self.method} {kind}s", disable=not show_progress):
            idx = order[b : b + batch_size]
            states, logits = self._answer_states([texts[i] for i in idx], kind)
            normalised = F.normalize(states.float(), dim=-1).cpu().numpy()
            if vectors is None:
                vectors = np.zeros((len(texts), *normalised.shape[1:]), dtype=np.float32)
            vectors[idx] = normalised
            pooled_logits = logits.float().max(1).values  # several positions: max-pooled over them
            for row, i in enumerate(idx):
                sparse[i] = sparse_weights(pooled_logits[row], self.vocabulary.text_ids(texts[i]))
        if vectors is None:
            raise ValueError(f"{self.method}: no texts to encode")
        reps = Representations(vectors, sparse, time.perf_counter() - start)
        return reps if self.keeps_positions else Representations(reps.pooled(), sparse, reps.seconds)


class PromptReps(_PromptEncoder):
    """PromptReps on any causal LM with a chat template (a plain prompt when it has none)."""

    method = "promptreps"

    def _load(self, path: str, dtype: torch.dtype, trust_remote_code: bool) -> None:
        from transformers import AutoModelForCausalLM

        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, trust_remote_code=trust_remote_code)

    def _prepare(self) -> None:
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token

    def prompt(self, text: str, kind: TextKind) -> str:
        body = self.templates[kind].format(text=_truncate(self.tokenizer, text, self.max_text_tokens))
        if getattr(self.tokenizer, "chat_template", None):
            chat = self.tokenizer.apply_chat_template(
                [{"role": "user", "content": body}], tokenize=False, add_generation_prompt=True
            )
            return chat + self.templates["answer_prefix"]
        return f"{body}\n{self.templates['answer_prefix']}"

    @torch.no_grad()
    def _batch(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, steps, H) last-layer states and (B, steps, V) logits at the answer position(s)."""
        tok = self.tokenizer
        ids = [tok(p, add_special_tokens=False)["input_ids"] for p in prompts]
        width = max(map(len, ids))
        # Left padding, so every prompt's last token is the last column; positions count real tokens only.
        input_ids = torch.tensor([[tok.pad_token_id] * (width - len(x)) + x for x in ids], device=self.device)
        mask = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in ids], device=self.device)
        positions = (mask.cumsum(-1) - 1).clamp_min(0)
        states, logits = [], []
        cache = None
        for _ in range(self.words):
            out = self.model(
                input_ids=input_ids,
                attention_mask=mask,
                position_ids=positions,
                cache=cache,
                use_cache=self.words > 1,
                output_hidden_states=True,
            )
            states.append(out.hidden_states[-1][:, -1])
            logits.append(out.logits[:, -1].float())
            cache = out.cache
            input_ids = logits[-1].argmax(-1, keepdim=True)  # greedy: the next word of the representation
            mask = torch.cat([mask, torch.ones_like(input_ids)], dim=1)
            positions = positions[:, -1:] + 1
        return torch.stack(states, 1), torch.stack(logits, 1)

    def _answer_states(self, texts: list[str], kind: TextKind) -> tuple[torch.Tensor, torch.Tensor]:
        return self._batch([self.prompt(text, kind) for text in texts])


@dataclass(frozen=True)
class MaskedLMAdapter:
    """How to run one family of bidirectional (masked or diffusion) LMs."""

    name: str
    model_types: tuple[str, ...]
    needs_remote_code: bool = False
    mask_token_id: int | None = None  # when the tokenizer does not name its mask token
    shift_logits: bool = False  # Dream (from an AR model) predicts token i at position i − 1

    def load(self, path: str, dtype: torch.dtype, trust_remote_code: bool):
        from transformers import AutoModel, AutoModelForMaskedLM

        if self.needs_remote_code and not trust_remote_code:
            raise ValueError(
                f"{path} is a {self.name} model, which loads with remote code only: pass --trust-remote-code "
                "(or trust_remote_code=True) if you trust its repository"
            )
        loader = AutoModel if self.needs_remote_code else AutoModelForMaskedLM
        return loader.from_pretrained(path, dtype=dtype, trust_remote_code=trust_remote_code)

    def mask_id(self, tokenizer) -> int:
        if tokenizer.mask_token_id is not None:
            return int(tokenizer.mask_token_id)
        if self.mask_token_id is not None:
            return self.mask_token_id
        raise ValueError(f"the {self.name} tokenizer has no mask token; DiffRetriever needs one")

    def forward(self, model, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        """(last-layer states, logits), every position attending to every other (bidirectional)."""
        out = model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
        logits = out.logits
        if self.shift_logits:
            logits = torch.cat([logits[:, :1], logits[:, :-1]], dim=1)
        return out.hidden_states[-1], logits


ADAPTERS = [
    MaskedLMAdapter("Dream", ("dream",), needs_remote_code=True, shift_logits=True),
    MaskedLMAdapter("LLaDA", ("llada",), needs_remote_code=True, mask_token_id=126336),
]
MASKED_LM = MaskedLMAdapter("masked LM", ())


def adapter_for(model_type: str) -> MaskedLMAdapter:
    for adapter in ADAPTERS:
        if model_type.lower() in adapter.model_types:
            return adapter
    return MASKED_LM


class DiffRetriever(_PromptEncoder):
    """DiffRetriever on any masked LM with a mask token, and on Dream / LLaDA through adapters."""

    method = "diffretriever"
    default_words = 4
    keeps_positions = True

    def _load(self, path: str, dtype: torch.dtype, trust_remote_code: bool) -> None:
        from transformers import AutoConfig

        try:
            model_type = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code).model_type
        except ValueError as err:  # transformers refuses configs that need remote code
            if trust_remote_code:
                raise
            raise ValueError(f"{path} needs remote code to load: pass --trust-remote-code if you trust it") from err
        self.adapter = adapter_for(model_type)
        self.model = self.adapter.load(path, dtype, trust_remote_code)

    def _prepare(self) -> None:
        self.mask_id = self.adapter.mask_id(self.tokenizer)
        self._wrapping: tuple[list[int], list[int]] | None = None

    def input_ids(self, text: str, kind: TextKind) -> tuple[list[int], list[int]]:
        """Token ids of prompt + K masks + tail (with the model's special tokens), and the mask positions."""
        tok = self.tokenizer
        body = self.templates[kind].format(text=_truncate(tok, text, self.max_text_tokens), k=self.words)
        head = tok(body, add_special_tokens=False)["input_ids"]
        tail = tok(self.templates["tail"], add_special_tokens=False)["input_ids"]
        inner = head + [self.mask_id] * self.words + tail
        prefix, suffix = self._special_wrapping()
        ids = prefix + inner + suffix
        start = len(prefix) + len(head)
        return ids, list(range(start, start + self.words))

    def _special_wrapping(self) -> tuple[list[int], list[int]]:
        """The special tokens the tokenizer puts before and after a text (e.g. [CLS] … [SEP])."""
        if self._wrapping is None:
            marker = self.tokenizer("x", add_special_tokens=False)["input_ids"]
            full = self.tokenizer("x", add_special_tokens=True)["input_ids"]
            at = next((i for i in range(len(full)) if full[i : i + len(marker)] == marker), 0)
            self._wrapping = (full[:at], full[at + len(marker) :])
        return self._wrapping

    @torch.no_grad()
    @torch.no_grad()
    def _answer_states(self, texts: list[str], kind: TextKind) -> tuple[torch.Tensor, torch.Tensor]:
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        built = [self.input_ids(text, kind) for text in texts]
        width = max(len(ids) for ids, _ in built)
        input_ids = torch.tensor([ids + [pad] * (width - len(ids)) for ids, _ in built], device=self.device)
        mask = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids, _ in built], device=self.device)
        states, logits = self.adapter.forward(self.model, input_ids, mask)  # ONE pass for all K positions
        rows = torch.tensor([positions for _, positions in built], device=self.device)  # (B, K)
        picked = torch.gather(states, 1, rows[..., None].expand(-1, -1, states.shape[-1]))
        return picked, torch.gather(logits, 1, rows[..., None].expand(-1, -1, logits.shape[-1]))
