"What the notebooks can't show about the foundation: the installed CLI, a core-only install, a reproducible base."
import json, os, subprocess, sys, venv
from pathlib import Path
from conftest import ROOT, run_cli

def test_cli_demo_writes_manifest_and_reports_perplexity(tmp_path, tiny_base):
    r = run_cli("demo", "model=tiny", f"runs_dir={tmp_path}", "name=t1", "train.max_steps=120", "train.eval_steps=60", "train.save_steps=60", "eval_examples=40", "bench_requests=16")
    assert r.returncode == 0, r.stderr
    assert "perplexity=" in r.stdout and "random_perplexity=" in r.stdout
    m = json.loads((tmp_path/"t1"/"manifest.json").read_text())
    base = m["stages"]["base"]
    assert base["status"] == "done" and base["perplexity"] < base["random_perplexity"] / 5
    assert m["versions"]["torch"] and m["machine"]["cpus"] and m["config"]["seed"] == 0
    assert {k: v["status"] for k, v in m["stages"].items()} == {k: "done" for k in m["config"]["stages"]}

def test_cli_config_typo_names_the_key(tmp_path):
    r = run_cli("demo", "sed=3", f"runs_dir={tmp_path}")
    assert r.returncode == 2
    assert "unknown key 'sed' (did you mean 'seed'?)" in r.stderr and "Traceback" not in r.stderr

def test_cli_missing_config_file_is_clear(tmp_path):
    r = run_cli("run", tmp_path/"nope.yaml")
    assert r.returncode == 2 and "config file not found" in r.stderr

def test_cli_unknown_subcommand_is_usage_error():
    r = run_cli("frobnicate")
    assert r.returncode == 2 and "invalid choice" in r.stderr

def test_base_build_is_deterministic(tmp_path, tiny_base):
    "A rebuild with the same seed in a fresh home gives bit-identical weights and tokenizer."
    from safetensors.torch import load_file
    code = "from llmft.base import build_base; print(build_base('tiny'))"
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "LLMFT_HOME": str(tmp_path)},
                         capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
    rebuilt, cached = load_file(Path(out)/"model.safetensors"), load_file(tiny_base/"model.safetensors")
    assert rebuilt.keys() == cached.keys()
    assert all((rebuilt[k] == cached[k]).all() for k in cached)
    assert (Path(out)/"tokenizer.json").read_bytes() == (tiny_base/"tokenizer.json").read_bytes()

def test_core_install_imports_without_torch(tmp_path):
    "`pip install .` (core only) in a fresh venv, then `import llmft` and the CLI's help, with no torch present; the shipped data is installed."
    env_dir = tmp_path/"venv"
    venv.create(env_dir, with_pip=True)
    py = env_dir/"bin"/"python"
    subprocess.run([str(py), "-m", "pip", "install", "-q", str(ROOT)], check=True, capture_output=True, timeout=600)
    r = subprocess.run([str(py), "-c", "import importlib.util as u, llmft, llmft.core, llmft.cli, llmft.pipeline; "
                        "print(llmft.__version__, u.find_spec('torch') is None)"], capture_output=True, text=True, cwd=tmp_path)  # not the checkout: import the installed copy
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [llmft_version(), "True"]
    r = subprocess.run([str(py), "-c", "from llmft.data import sample_dataset_dir as d; print(sorted(p.name for p in d().iterdir()), (d().parent/'prices.yaml').is_file())"],
                       capture_output=True, text=True, cwd=tmp_path)
    assert r.stdout.strip() == "['test.jsonl', 'train.jsonl', 'validation.jsonl'] True", r.stdout + r.stderr  # the demo's data ships in the wheel

def llmft_version():
    import llmft; return llmft.__version__
