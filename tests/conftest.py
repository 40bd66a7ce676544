"Shared fixtures: offline, threads pinned, every file under the checkout or a temp dir."
import os, sys, subprocess
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("LLMFT_HOME", str(ROOT/".llmft"))
os.environ.setdefault("HF_HOME", str(Path(os.environ["LLMFT_HOME"])/"hf"))
os.environ.setdefault("MPLCONFIGDIR", str(Path(os.environ["LLMFT_HOME"])/"matplotlib"))
os.environ["HF_HUB_OFFLINE"] = os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ["TOKENIZERS_PARALLELISM"] = "false"

def run_cli(*args, cwd=None, timeout=600, env=None):
    "Run the `llmft` console script as a user would; returns the CompletedProcess."
    exe = Path(sys.executable).parent/"llmft"
    return subprocess.run([str(exe), *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})

@pytest.fixture(scope="session")
def tiny_base() -> Path:
    from llmft.base import build_base
    return build_base("tiny")
