"""What `dtype=auto` buys an engine that runs transformers' forward on a CPU (served adapters, `--cpu-compile false`):
`llmft serve` with SmolLM2 and a LoRA adapter, once with `--dtype bfloat16` (the weights' own, what `auto` gave before)
and once with `--dtype auto` (float32 where this CPU's bf16 products are under half its float32 rate: AVX2 alone), the
same `llmft bench` load on each (random 128-token prompts, greedy, `ignore_eos`), one server at a time, alternating.

    python bench/serve_eager_dtype.py --adapter runs/<demo run>/lora/adapter [--rounds 2] [--concurrency 4]

Writes bench/out/serve_eager_dtype.json and prints a Markdown table with each server's `health()["dtype"]`.
"""
import argparse, json, platform, sys, time
from pathlib import Path
import httpx
from llmft.bench import BenchConfig, run_bench
from llmft.base import build_imported
from llmft.serve.process import ServerProcess, free_port
from llmft.serve.engine.forward_cpu import _cpu_name

p = argparse.ArgumentParser()
p.add_argument("--adapter", required=True); p.add_argument("--rounds", type=int, default=2)
p.add_argument("--concurrency", type=int, default=4); p.add_argument("--requests", type=int, default=16)
p.add_argument("--max-tokens", type=int, default=32); p.add_argument("--out", default="bench/out")
args = p.parse_args()
out = Path(args.out); out.mkdir(parents=True, exist_ok=True)
model = str(build_imported("smollm2"))

def serve_and_measure(dtype:str, rnd:int)->dict:
    port = free_port()
    cmd = [str(Path(sys.executable).parent/"llmft"), "serve", "--model", "smollm2", "--adapter", f"ft={args.adapter}", "--port", port, "--dtype", dtype, "--max-batch", "8"]
    t0 = time.time()
    proc = ServerProcess(cmd, f"http://127.0.0.1:{port}/health", log=out/f"serve_eager_dtype_{dtype}.log", timeout=600, name=dtype).start()
    try:
        up, health = time.time() - t0, httpx.get(proc.url + "/health", timeout=30).json()
        r = run_bench(BenchConfig(url=proc.url, model="ft", tokenizer=model, num_requests=args.requests, concurrency=args.concurrency, prompt_len=128,
                                  max_tokens=args.max_tokens, ignore_eos=True, seed=rnd, monitor_pid=proc.pid, out=str(out/f"serve_eager_dtype_{dtype}")))
    finally: proc.stop(timeout=30)
    row = dict(dtype=dtype, round=rnd, health_dtype=health.get("dtype", "(no note)"), prepack=health.get("prepack"), startup_s=round(up, 1),
               output_tok_s=r["output_token_throughput"], ttft_p50=r["ttft_s"]["p50"], tpot_p50=(r.get("tpot_s") or {}).get("p50"), e2e_p95=r["e2e_s"]["p95"], errors=r["errors"])
    print(row, flush=True)
    return row

rows = [serve_and_measure(d, k) for k in range(args.rounds) for d in (("bfloat16", "auto") if k % 2 == 0 else ("auto", "bfloat16"))]
report = dict(machine=_cpu_name(), platform=platform.platform(), adapter=args.adapter, concurrency=args.concurrency, requests=args.requests, max_tokens=args.max_tokens, rows=rows)
(out/"serve_eager_dtype.json").write_text(json.dumps(report, indent=2))
md = [f"Machine: {report['machine']}", "", "| --dtype | health dtype | round | out tok/s | TTFT p50 | TPOT p50 | E2E p95 |", "|---|---|---|---|---|---|---|"]
md += [f"| {r['dtype']} | {r['health_dtype']} | {r['round']} | {r['output_tok_s']:.1f} | {r['ttft_p50']:.2f} s | {(r['tpot_p50'] or 0) * 1000:.0f} ms | {r['e2e_p95']:.1f} s |" for r in rows]
print("\n".join(md))
