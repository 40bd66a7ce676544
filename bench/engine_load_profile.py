"""Issue 26, target 1: where a batched load's time goes inside `llmft serve`'s engine, with no HTTP in the way.

Starts a `TransformersEngine` on SmolLM2 as `llmft serve --max-batch 48 --max-model-len 2048` runs it, waits until its
decode packages are in, then runs one of `bench/serve_peers.py`'s load shapes twice (random prompt tokens of the shape's
length, greedy, `ignore_eos`) and times every pass in the engine thread: mixed passes that carry prompt tokens, mixed passes
of decode tokens only, and decode steps through the packages.

    OMP_NUM_THREADS=2 python bench/engine_load_profile.py [--shape c16_long] [--max-prefill-tokens N]

Prints, per repeat, output tokens/s, TTFT p50 and the passes' counts, tokens and seconds.
"""
import argparse, asyncio, collections, random, statistics, time
from llmft.serve.engine import TransformersEngine, EngineSettings, GenerationRequest, SamplingParams
from llmft.serve.engine.forward_cpu import _cpu_name

p = argparse.ArgumentParser()
p.add_argument("--shape", default="c16_long", choices=["c16_long", "c48", "c16"]); p.add_argument("--max-prefill-tokens", type=int, default=None)
p.add_argument("--repeats", type=int, default=2)
args = p.parse_args()
n, length, conc, max_tokens = dict(c16_long=(48, 400, 16, 32), c48=(96, 128, 48, 64), c16=(64, 128, 16, 64))[args.shape]
passes = []

def timed(kind, fn):
    def run(rows, *a, **k):
        t = time.perf_counter(); out = fn(rows, *a, **k); d = time.perf_counter() - t
        toks, ones = (sum(len(r[1]) for r in rows), sum(len(r[1]) == 1 for r in rows)) if kind == "mixed" else (len(rows), len(rows))
        passes.append(("decode step" if kind == "decode" else "mixed, decode tokens only" if toks == ones else "mixed, with prompt tokens", toks, d))
        return out
    return run

async def main():
    t0 = time.time()
    eng = TransformersEngine(EngineSettings(model="smollm2", max_batch=48, max_model_len=2048, max_prefill_tokens=args.max_prefill_tokens))
    await eng.start()
    while eng.health()["cpu_compile"].startswith("building"): await asyncio.sleep(2)
    print(_cpu_name(), f"| ready after {time.time() - t0:.0f} s |", eng.health()["cpu_compile"], "|", eng.health()["chunked_prefill"], flush=True)
    eng.forward.mixed, eng.forward.decode = timed("mixed", eng.forward.mixed), timed("decode", eng.forward.decode)
    rng, sem, ttft = random.Random(0), asyncio.Semaphore(conc), []
    async def one(i, measured):
        async with sem:
            t, first = time.perf_counter(), None
            req = GenerationRequest(f"r{measured}{i}", [rng.randrange(1000, 40000) for _ in range(length)], SamplingParams(max_tokens=max_tokens, temperature=0, ignore_eos=True))
            async for out in eng.generate(req):
                if first is None and out.token_ids: first = time.perf_counter() - t
            if measured: ttft.append(first)
    await asyncio.gather(*(one(i, False) for i in range(8)))  # warm-up
    for _ in range(args.repeats):
        passes.clear(); ttft.clear(); t = time.perf_counter()
        await asyncio.gather(*(one(i, True) for i in range(n)))
        wall = time.perf_counter() - t
        by = collections.defaultdict(lambda: [0, 0, 0.0])
        for kind, toks, d in passes: by[kind][0] += 1; by[kind][1] += toks; by[kind][2] += d
        print(f"{args.shape}, {args.max_prefill_tokens or 'default'} tokens a pass: wall {wall:.2f} s, {n * max_tokens / wall:.1f} output tok/s, TTFT p50 {statistics.median(ttft):.2f} s", flush=True)
        for kind, (c, toks, d) in by.items(): print(f"  {kind}: {c} passes, {toks} tokens, {d:.2f} s ({1000 * d / c:.0f} ms a pass)")
    await eng.shutdown()

asyncio.run(main())
