"`llmft eval` as a user runs it, on a real fine-tune, and its errors."
import json
from conftest import run_cli
from llmft.data import sample_dataset_dir

TEST = sample_dataset_dir()/"test.jsonl"

def test_cli_eval_base_vs_finetuned(tmp_path, tiny_base):
    r = run_cli("train", f"output_dir={tmp_path/'ft'}", f"tracking.store_dir={tmp_path}", "max_steps=100", "batch_size=32", "save_steps=100", "eval_steps=100", "data.max_eval_examples=20")
    assert r.returncode == 0, r.stderr[-2000:]
    r = run_cli("eval", "--base", "tiny", "--adapter", tmp_path/"ft"/"adapter", "--data", "sample", "--out", tmp_path/"rep", "--max-examples", "60")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "Both models saw identical inputs: 60 examples" in r.stdout and "report:" in r.stdout
    ev = json.loads((tmp_path/"rep"/"eval.json").read_text())
    assert ev["examples"][0]["id"] == "test-00000" and ev["settings"]["template"] == "chat"  # `sample` is the shipped test split; the adapter's template (tiny has a chat template: the default)
    assert ev["summary"]["base"]["dtype"] == ev["summary"]["tuned"]["dtype"] == "float32"
    assert ev["comparison"]["perplexity"]["verdict"] == "better"
    assert ev["summary"]["tuned"]["perplexity"] < ev["summary"]["base"]["perplexity"]
    assert ev["comparison"]["retention"]["base"] == ev["summary"]["base"]["retention_perplexity"] > 1 and "retention (perplexity on held-out general text" in (tmp_path/"rep"/"eval.md").read_text()
    import mlflow
    run_id = json.loads((tmp_path/"ft"/"llmft_run.json").read_text())["run_id"]
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path.resolve()}/mlflow.db")
    assert {a.path for a in client.list_artifacts(run_id, "eval")} == {"eval/eval.html", "eval/eval.json", "eval/eval.md"}
    assert "eval_tuned_perplexity" in client.get_run(run_id).data.metrics

def test_cli_eval_errors(tmp_path):
    r = run_cli("eval", "--base", "tiny", "--adapter", tmp_path/"missing", "--data", TEST, "--out", tmp_path/"o")
    assert r.returncode == 2 and "adapter folder" in r.stderr and "does not exist" in r.stderr
    empty = tmp_path/"empty.jsonl"; empty.write_text("")
    r = run_cli("eval", "--base", "tiny", "--data", empty, "--out", tmp_path/"o")
    assert r.returncode == 1 and "contains no examples" in r.stderr
    r = run_cli("eval", "--base", "tiny", "--data", TEST, "--out", tmp_path/"o", "--tasks", "poetry")
    assert r.returncode == 1 and "no examples to evaluate for tasks ['poetry']" in r.stderr
    bad = tmp_path/"bad.jsonl"; bad.write_text('{"id": "j1", "instruction": "Give JSON.", "output": "Oslo", "metric": "json"}\n')
    r = run_cli("eval", "--base", "tiny", "--data", bad, "--out", tmp_path/"o")
    assert r.returncode == 1 and "bad.jsonl:1 (id=j1): field 'output' is not valid JSON, which the json metric needs: 'Oslo'" in r.stderr, r.stderr[-2000:]
