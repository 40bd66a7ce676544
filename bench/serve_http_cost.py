"""CPU time of `llmft serve`'s HTTP layer per streamed token (machine A: the asyncio thread competes with the engine for 2 cores).

A server (`tiny`, eager transformers engine) runs in a child process with uvicorn on its event-loop thread; a load generator in another
process streams 64 requests × 64 tokens at concurrency 16, `--loads` times; the event-loop thread's CPU time (from /proc) divided by the
tokens streamed is the HTTP layer's cost per token (request parsing, engine hand-off, SSE chunks, socket writes). Arms, alternating for
`--rounds` rounds: `auto` (uvicorn's choice: uvloop + httptools when installed, as `llmft serve` runs) and `h11` (asyncio + h11, uvicorn's
pure-Python fallback). Writes bench/out/serve_http_cost.json and .md.
"""
import argparse, json, os, statistics, subprocess, sys, threading, time
from pathlib import Path

def serve_and_measure(arm:str, loads:int, port:int):
    "Child: serve, drive the load from a grandchild process, print the event-loop thread's CPU seconds and the tokens streamed."
    import httpx, uvicorn
    from llmft.base import build_base
    from llmft.serve.app import ServerSettings, create_app
    from llmft.serve.engine import EngineSettings
    model = str(build_base("tiny"))
    app = create_app(ServerSettings(port=port, served_model_name="m", engine=EngineSettings(model=model, max_batch=16, cpu_compile=False)))
    loop_tid = threading.get_native_id()
    def cpu_s():
        f = open(f"/proc/self/task/{loop_tid}/stat").read(); f = f[f.rindex(")") + 2:].split()
        return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
    load = f"""from llmft.bench import BenchConfig, run_bench
n = 0
for _ in range({loads}):
    r = run_bench(BenchConfig(url="http://127.0.0.1:{port}", model="m", tokenizer={model!r}, num_requests=64, concurrency=16, prompt_len=128, max_tokens=64, ignore_eos=True, out="bench/out/http_cost_run"))
    n += round(r["mean_output_tokens"] * r["completed"])
print(n)"""
    def drive():
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200: break
            except httpx.HTTPError: time.sleep(0.5)
        c0 = cpu_s(); tokens = int(subprocess.run([sys.executable, "-c", load], capture_output=True, text=True, check=True).stdout.split()[-1])
        print(json.dumps(dict(arm=arm, loop_cpu_s=cpu_s() - c0, tokens=tokens)), flush=True); os._exit(0)
    threading.Thread(target=drive, daemon=True).start()
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", **(dict(loop="asyncio", http="h11") if arm == "h11" else {}))

if __name__ == "__main__":
    p = argparse.ArgumentParser(); p.add_argument("--rounds", type=int, default=2); p.add_argument("--loads", type=int, default=2)
    p.add_argument("--out", default="bench/out"); p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        from llmft.serve.process import free_port
        serve_and_measure(args.child, args.loads, free_port()); sys.exit(0)
    out, rows = Path(args.out), []; out.mkdir(parents=True, exist_ok=True)
    for _ in range(args.rounds):
        for arm in ("auto", "h11"):
            r = subprocess.run([sys.executable, __file__, "--child", arm, "--loads", str(args.loads)], capture_output=True, text=True)
            line = [l for l in r.stdout.splitlines() if l.startswith("{")]
            if not line: sys.exit(f"arm {arm} failed:\n{r.stderr[-2000:]}")
            rows.append(json.loads(line[-1])); rows[-1]["us_per_token"] = 1e6 * rows[-1]["loop_cpu_s"] / rows[-1]["tokens"]
            print(rows[-1], flush=True)
    med = {arm: statistics.median(r["us_per_token"] for r in rows if r["arm"] == arm) for arm in ("auto", "h11")}
    from importlib.util import find_spec
    report = dict(time=time.strftime("%Y-%m-%d %H:%M"), rows=rows, median_us_per_token=med, auto_over_h11=med["auto"] / med["h11"],
                  auto_is=dict(loop="uvloop" if find_spec("uvloop") else "asyncio", http="httptools" if find_spec("httptools") else "h11"))
    (out/"serve_http_cost.json").write_text(json.dumps(report, indent=2))
    md = ["| arm | event-loop CPU per streamed token (median) |", "|---|---|",
          f"| auto ({report['auto_is']['loop']} + {report['auto_is']['http']}) | {med['auto']:.0f} µs |", f"| asyncio + h11 | {med['h11']:.0f} µs |",
          "", f"auto ÷ h11: {report['auto_over_h11']:.2f}×"]
    (out/"serve_http_cost.md").write_text("\n".join(md) + "\n"); print("\n".join(md))
