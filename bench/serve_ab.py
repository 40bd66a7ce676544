"""A/B of `llmft serve` settings on the peer workload of `serve_latency.py` (`small`, 64 requests, concurrency 16).

Each arm is a name, extra `llmft serve` flags and extra environment variables. Servers run one after another, the arms
alternating for `--rounds` rounds (A B A B …), because this machine's speed drifts minute to minute; each server is
warmed up, then gets 64 requests, concurrency 16, 128-token prompts, up to 64 output tokens. Examples:

    python bench/serve_ab.py --arm wait10 "" --arm wait0 "--admit-wait-ms 0"
    python bench/serve_ab.py --arm libgomp "" --arm PASSIVE "" --env PASSIVE OMP_WAIT_POLICY=PASSIVE

(`llmft serve` used to set OMP_WAIT_POLICY=PASSIVE unless the environment set it, so runs before that changed passed an
empty value — libgomp's own default — for the other arm.)
Writes bench/out/serve_ab.json.
"""
import argparse, json, shlex, sys, time
from pathlib import Path
from llmft.base import build_base
from llmft.bench import BenchConfig, run_bench
from llmft.serve.process import ServerProcess, free_port as port

p = argparse.ArgumentParser()
p.add_argument("--arm", nargs=2, action="append", metavar=("NAME", "FLAGS"), required=True, help="an arm: its name and extra `llmft serve` flags")
p.add_argument("--env", nargs=2, action="append", default=[], metavar=("NAME", "K=V"), help="an environment variable for arm NAME")
p.add_argument("--rounds", type=int, default=2); p.add_argument("--model", default="small"); p.add_argument("--out", default="bench/out")
args = p.parse_args()
out = Path(args.out); out.mkdir(parents=True, exist_ok=True)
model, exe = str(build_base(args.model)), Path(sys.executable).parent/"llmft"
envs = {name: {} for name, _ in args.arm}
for name, kv in args.env:
    if name not in envs: sys.exit(f"--env {name}: no arm of that name (arms: {list(envs)})")
    k, eq, v = kv.partition("=")
    if not eq: sys.exit(f"--env {name} {kv}: expected K=V")
    envs[name][k] = v

def measure(name:str, flags:str)->dict:
    pt = port(); url, log = f"http://127.0.0.1:{pt}", out/f"serve_ab_{name}.log"
    srv = ServerProcess([str(exe), "serve", "--model", model, "--port", str(pt), "--max-batch", "16", "--served-model-name", "m", *shlex.split(flags)],
                        url + "/health", log=log, env=envs[name], timeout=600, name=f"server {name}").start()
    try:
        run_bench(BenchConfig(url=url, model="m", tokenizer=model, num_requests=16, concurrency=16, prompt_len=128, max_tokens=16, ignore_eos=False, out=str(out/"warmup")))
        r = run_bench(BenchConfig(url=url, model="m", tokenizer=model, num_requests=64, concurrency=16, prompt_len=128, max_tokens=64, ignore_eos=False, out=str(out/"serve_ab_run")))
    finally: srv.stop()
    return dict(arm=name, flags=flags, env=envs[name], time=time.strftime("%H:%M:%S"), output_tok_s=r["output_token_throughput"], errors=r["errors"],
                ttft_p50=r["ttft_s"]["p50"], ttft_p99=r["ttft_s"]["p99"], e2e_p95=r["e2e_s"]["p95"])

rows = []
for _ in range(args.rounds):
    for name, flags in args.arm:
        rows.append(measure(name, flags))
        print(name, round(rows[-1]["output_tok_s"]), "tok/s, TTFT p50", round(rows[-1]["ttft_p50"], 3), "p99", round(rows[-1]["ttft_p99"], 3), flush=True)
        (out/"serve_ab.json").write_text(json.dumps(rows, indent=2))
