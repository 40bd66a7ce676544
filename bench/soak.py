"""Load and soak `llmft serve`: a bounded run of mixed streaming and non-streaming requests at a
concurrency above the engine's batch size. Every request must be answered (200) or refused (503/429);
no other 5xx; the server's memory must stay flat (RSS growth after the first quarter of the run at most --max-rss-growth-mb:
measured +0.0 to +0.1 MB in 15-second runs and +0.1 MB in 300 s, bench/RESULTS.md); the server must be healthy at the end.
Writes OUT/soak.json and OUT/soak.md.   python bench/soak.py --seconds 600 --out bench/out/soak
"""
import argparse, asyncio, json, random, sys, time
from pathlib import Path
import httpx, psutil
from llmft.serve.process import ServerProcess, free_port, llmft_serve_command

p = argparse.ArgumentParser()
p.add_argument("--seconds", type=float, default=600); p.add_argument("--concurrency", type=int, default=16)
p.add_argument("--max-batch", type=int, default=8); p.add_argument("--max-waiting", type=int, default=8)
p.add_argument("--max-rss-growth-mb", type=float, default=8.0)
p.add_argument("--model", default="tiny"); p.add_argument("--out", default="bench/out/soak"); p.add_argument("--seed", type=int, default=0)
args = p.parse_args()
out = Path(args.out); out.mkdir(parents=True, exist_ok=True)
port = free_port(); url = f"http://127.0.0.1:{port}"
try: server = ServerProcess(llmft_serve_command("--model", args.model, "--max-batch", args.max_batch, "--max-waiting", args.max_waiting, port=port),
                            url + "/health", log=out/"server.log").start()
except RuntimeError as e: sys.exit(f"server did not start: {e}")
proc, rng = psutil.Process(server.pid), random.Random(args.seed)
stats = dict(sent=0, by_status={}, unanswered=0, stream_errors=0, streams_without_done=0, samples=[], rss_mb=[])

async def client(c: httpx.AsyncClient, end: float):
    while time.time() < end:
        body = dict(model=args.model, prompt=" ".join(rng.choice(["the", "file", "open", "return", "value", "list"]) for _ in range(rng.randint(1, 200))),
                    max_tokens=rng.randint(1, 64), temperature=rng.choice([0, 0.7, 1.0]))
        stream = rng.random() < 0.5
        stats["sent"] += 1
        try:
            if stream:
                async with c.stream("POST", url + "/v1/completions", json=body | dict(stream=True)) as r:
                    code = r.status_code
                    if code == 200:
                        lines = [l async for l in r.aiter_lines() if l.startswith("data: ")]
                        errors = [l for l in lines if l != "data: [DONE]" and "error" in json.loads(l[6:])]  # an error event, not text that says "error"
                        if errors: stats["stream_errors"] += 1; stats["samples"].append(errors[0][:300])
                        if not lines or lines[-1] != "data: [DONE]": stats["streams_without_done"] += 1; stats["samples"].append((lines or ["<nothing>"])[-1][:300])
                    else: await r.aread()
            else: code = (await c.post(url + "/v1/completions", json=body)).status_code
        except httpx.HTTPError: stats["unanswered"] += 1; continue
        stats["by_status"][str(code)] = stats["by_status"].get(str(code), 0) + 1

async def sampler(end: float):
    while time.time() < end:
        stats["rss_mb"].append(round(proc.memory_info().rss / 2**20, 1)); await asyncio.sleep(1)

async def main():
    end = time.time() + args.seconds
    async with httpx.AsyncClient(timeout=120) as c:
        await asyncio.gather(sampler(end), *(client(c, end) for _ in range(args.concurrency)))

asyncio.run(main())
healthy = httpx.get(url + "/health", timeout=5).json().get("status") == "ok"
metrics = httpx.get(url + "/metrics", timeout=5).text
server.stop()
rss = stats["rss_mb"]; settle = rss[len(rss) // 4:] or rss  # after warm-up
rep = dict(seconds=args.seconds, concurrency=args.concurrency, max_batch=args.max_batch, max_waiting=args.max_waiting, sent=stats["sent"],
           by_status=stats["by_status"], server_errors_5xx=sum(v for k, v in stats["by_status"].items() if k.startswith("5") and k != "503"),
           refused=stats["by_status"].get("503", 0) + stats["by_status"].get("429", 0), unanswered=stats["unanswered"], stream_errors=stats["stream_errors"],
           streams_without_done=stats["streams_without_done"], problem_samples=stats["samples"][:5],
           rss_mb_start=rss[0] if rss else None, rss_mb_after_warmup=settle[0] if settle else None, rss_mb_end=rss[-1] if rss else None, rss_samples_mb=rss,
           rss_growth_after_warmup_mb=round(settle[-1] - settle[0], 1) if settle else None, healthy_after=healthy,
           aborted=next((l.split()[-1] for l in metrics.splitlines() if l.startswith("llmft_engine_aborted")), "0"), server_exit=server.proc.returncode)
(out/"soak.json").write_text(json.dumps(rep, indent=2))
(out/"soak.md").write_text("| soak | value |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rep.items() if k != "rss_samples_mb") + "\n")
print(json.dumps(rep, indent=2))
ok = (rep["server_errors_5xx"] == 0 and rep["unanswered"] == 0 and rep["stream_errors"] == 0 and rep["streams_without_done"] == 0 and healthy
      and rep["rss_growth_after_warmup_mb"] is not None and rep["rss_growth_after_warmup_mb"] <= args.max_rss_growth_mb)
sys.exit(0 if ok else 1)
