"`llmft bench` against a live `llmft serve`, as an operator runs it."
import json, os
from pathlib import Path
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

def test_bench_unreachable_server_reports_errors_not_crash(tmp_path):
    r = run_cli("bench", "--url", "http://127.0.0.1:9", "--model", "x", "--num-requests", "3", "--concurrency", "1", "--out", tmp_path/"b")
    assert r.returncode == 0
    rep = json.loads((tmp_path/"b"/"bench.json").read_text())
    assert (rep["completed"], rep["errors"]) == (0, 3) and "ConnectError" in rep["first_errors"][0]
