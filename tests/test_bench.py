"`llmft bench` against a live `llmft serve`, as an operator runs it."
import json
from conftest import run_cli
from test_serve import Server

def test_bench_against_llmft_serve_reports_cpu_and_ram(tmp_path, tiny_base):
    s = Server("--model", "tiny", "--max-batch", "8")
    try:
        r = run_cli("bench", "--url", s.url, "--model", "tiny", "--num-requests", "16", "--concurrency", "4", "--prompt-len", "64",
                    "--max-tokens", "16", "--slo-e2e", "5", "--monitor-pid", s.proc.pid, "--out", tmp_path/"b")
        assert r.returncode == 0, r.stderr[-2000:]
        rep = json.loads((tmp_path/"b"/"bench.json").read_text())
        assert (rep["completed"], rep["errors"], rep["mean_output_tokens"]) == (16, 0, 16)
        assert abs(rep["mean_prompt_tokens"] - 64) <= 2
        for key in ("e2e_s", "ttft_s", "tpot_s", "itl_s"): assert {"p50", "p95", "p99", "mean"} <= set(rep[key])
        res = rep["resources"]
        assert res["proc_rss_gb"]["max"] > 0 and "cpu_percent" in res and "proc_cpu_percent" in res
        assert res["gpu"]["available"] is False and res["gpu"]["note"]
        for f in ("bench.md", "latency_cdf.png", "ttft_hist.png", "resources.png", "requests.jsonl"): assert (tmp_path/"b"/f).exists()
        assert "| E2E latency (ms) |" in r.stdout
        r = run_cli("bench", "--url", s.url, "--model", "tiny", "--num-requests", "8", "--concurrency", "1,4", "--max-tokens", "8", "--out", tmp_path/"sweep")
        assert r.returncode == 0, r.stderr[-2000:]
        assert [row["concurrency"] for row in json.loads((tmp_path/"sweep"/"sweep.json").read_text())] == [1, 4]
    finally: s.stop()

def test_bench_where_every_request_fails_exits_1_saying_why(tmp_path):
    r = run_cli("bench", "--url", "http://127.0.0.1:9", "--model", "tiny", "--num-requests", "3", "--concurrency", "1", "--out", tmp_path/"b")
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert "llmft bench: all 3 requests failed (no response: 3); first error: ConnectError" in r.stderr
    rep = json.loads((tmp_path/"b"/"bench.json").read_text())  # the report is still written
    assert (rep["completed"], rep["errors"]) == (0, 3) and "ConnectError" in rep["first_errors"][0]

def test_bench_unknown_model_and_no_tokenizer_are_said(tmp_path, tiny_base):
    "An adapter name or a typo as --model: 404s are exit 1 with the server's message; prompts cut to words are said and recorded."
    s = Server("--model", "tiny")
    try:
        r = run_cli("bench", "--url", s.url, "--model", "tinny", "--num-requests", "4", "--concurrency", "2", "--prompt-len", "16", "--out", tmp_path/"b")
        assert r.returncode == 1, r.stderr[-2000:]
        assert "llmft bench: no tokenizer for model 'tinny'" in r.stderr and "give --tokenizer" in r.stderr
        assert "all 4 requests failed (status 404: 4)" in r.stderr and "model 'tinny' does not exist" in r.stderr
        assert json.loads((tmp_path/"b"/"bench.json").read_text())["prompts"]["unit"] == "words"
        r = run_cli("bench", "--url", s.url, "--model", "tiny", "--tokenizer", "tinny", "--out", tmp_path/"c")
        assert r.returncode == 2 and "tokenizer 'tinny' cannot be loaded" in r.stderr and "Traceback" not in r.stderr, r.stderr[-2000:]
    finally: s.stop()

def test_cost_errors_name_the_run_or_the_file(tmp_path):
    import mlflow
    mlflow.MlflowClient(f"sqlite:///{tmp_path}/mlflow.db").create_experiment("e")  # a store without that run
    r = run_cli("cost", "--instance", "c7i.large", "--train-run", "0123abcd", "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db", "--out", tmp_path/"o")
    assert r.returncode == 2 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr[-3000:]
    assert "MLflow run 0123abcd not found in sqlite:" in r.stderr
    (tmp_path/"bench.json").write_text('{"requests": 3, ')
    r = run_cli("cost", "--instance", "c7i.large", "--bench", tmp_path/"bench.json", "--out", tmp_path/"o")
    assert r.returncode == 2 and f"{tmp_path/'bench.json'}: not valid JSON" in r.stderr and "Traceback" not in r.stderr, r.stderr[-3000:]
