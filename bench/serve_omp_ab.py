"""A/B of OpenMP's wait policy for `llmft serve` (transformers engine), on the peer workload of `serve_latency.py`.

Servers run one after another, alternating the policy (default: `libgomp PASSIVE libgomp PASSIVE`); each is warmed up,
then gets 64 requests, concurrency 16, 128-token prompts, up to 64 output tokens on `small`. `llmft serve` sets
OMP_WAIT_POLICY=PASSIVE when the environment does not set it, so the `libgomp` arm passes an empty value, which libgomp
treats as its own default (spin a while, then sleep; it may warn about the value). Writes bench/out/serve_omp_ab.json.
"""
import argparse, json, os, signal, socket, subprocess, sys, time
from pathlib import Path
import httpx
from llmft.base import build_base
from llmft.bench import BenchConfig, run_bench

p = argparse.ArgumentParser(); p.add_argument("--policies", nargs="+", default=["libgomp", "PASSIVE", "libgomp", "PASSIVE"]); p.add_argument("--out", default="bench/out")
args = p.parse_args()
out = Path(args.out); out.mkdir(parents=True, exist_ok=True)
small, exe = str(build_base("small")), Path(sys.executable).parent/"llmft"

def port():
    with socket.socket() as s: s.bind(("127.0.0.1", 0)); return s.getsockname()[1]

rows = []
for policy in args.policies:
    pt = port(); url = f"http://127.0.0.1:{pt}"
    env = {**os.environ, "OMP_WAIT_POLICY": "" if policy == "libgomp" else policy}
    proc = subprocess.Popen([str(exe), "serve", "--model", small, "--port", str(pt), "--max-batch", "16", "--served-model-name", "m"],
                            stdout=open(out/f"serve_omp_{policy}.log", "w"), stderr=subprocess.STDOUT, env=env)
    try:
        t0 = time.time()
        while True:
            if proc.poll() is not None or time.time() - t0 > 600: sys.exit(f"server did not start; see {out}/serve_omp_{policy}.log")
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200: break
            except httpx.HTTPError: time.sleep(1)
        run_bench(BenchConfig(url=url, model="m", tokenizer=small, num_requests=16, concurrency=16, prompt_len=128, max_tokens=16, ignore_eos=False, out=str(out/"warmup")))
        r = run_bench(BenchConfig(url=url, model="m", tokenizer=small, num_requests=64, concurrency=16, prompt_len=128, max_tokens=64, ignore_eos=False, out=str(out/"serve_omp_ab_run")))
    finally:
        proc.send_signal(signal.SIGTERM); proc.wait(60)
    rows.append(dict(policy=policy, output_tok_s=r["output_token_throughput"], ttft_p50=r["ttft_s"]["p50"]))
    print(policy, round(r["output_token_throughput"]), "tok/s, TTFT p50", round(r["ttft_s"]["p50"], 3), flush=True)
(out/"serve_omp_ab.json").write_text(json.dumps(rows, indent=2))
