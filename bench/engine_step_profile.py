"""Issue 26, target 2 (one stream): where a token's time goes inside `llmft serve`'s engine, with no HTTP in the way.

Starts a `TransformersEngine` on SmolLM2 (the compiled CPU path, as `llmft serve --max-batch 48 --max-model-len 2048`
runs it), streams one greedy request (`--tokens` tokens, `ignore_eos`) a few times, and times in the engine thread:

- the decode package's call (the compiled step), `forward.decode` around it (inputs, mask, padding a batch of one to two),
  `_advance` (sampling, detokenizing, stop strings, handing the output over) and `_decode` (all of a step);
- the gap between two steps' starts (the loop: aborts, jobs, admission) and the consumer's time between tokens;
- whether the package's call releases the GIL: a second Python thread sleeps 1 ms in a loop, and its lateness is
  measured while the engine decodes and while it idles. If the call held the GIL, that thread (in a server: the HTTP
  thread's per-token work) would be late by about a step.

    OMP_NUM_THREADS=2 python bench/engine_step_profile.py [--tokens 64] [--repeats 3]

Writes bench/out/engine_step_profile.json and prints a Markdown table (ms, median over the measured tokens).
"""
import argparse, asyncio, functools, json, platform, statistics, threading, time
from pathlib import Path
from llmft.serve.engine import TransformersEngine, EngineSettings, GenerationRequest, SamplingParams
from llmft.serve.engine.forward_cpu import _cpu_name

p = argparse.ArgumentParser()
p.add_argument("--model", default="smollm2"); p.add_argument("--tokens", type=int, default=64)
p.add_argument("--repeats", type=int, default=3); p.add_argument("--max-batch", type=int, default=48)
p.add_argument("--out", default="bench/out")
args = p.parse_args()

times = {}
def timed(name, fn):
    @functools.wraps(fn)
    def run(*a, **k):
        t = time.perf_counter()
        try: return fn(*a, **k)
        finally: times.setdefault(name, []).append((t, time.perf_counter() - t))
    return run

late, sleeping = [], threading.Event()
def sleeper():
    "Sleep 1 ms at a time; record how late each wake-up came (ms) and when."
    while True:
        t = time.perf_counter(); time.sleep(0.001)
        if sleeping.is_set(): late.append((t, (time.perf_counter() - t - 0.001) * 1000))

async def main():
    t0 = time.time()
    eng = TransformersEngine(EngineSettings(model=args.model, max_batch=args.max_batch, max_model_len=2048))
    await eng.start()
    start_s = time.time() - t0
    f = eng.forward
    for b in list(getattr(f, "packages", {})): f.packages[b] = timed("package call", f.packages[b])
    f.decode = timed("forward.decode", f.decode)
    eng._advance, eng._decode = timed("_advance", eng._advance), timed("_decode", eng._decode)
    prompt = eng.tokenizer.apply_chat_template([{"role": "user", "content": "Write a long story about a lighthouse keeper."}], add_generation_prompt=True)
    if not isinstance(prompt, list): prompt = prompt["input_ids"]
    threading.Thread(target=sleeper, daemon=True).start()
    gaps, runs = [], []
    for r in range(args.repeats + 1):  # the first run warms up and is not counted
        times.clear(); sleeping.set()
        stamps = []
        async for out in eng.generate(GenerationRequest(f"r{r}", list(prompt), SamplingParams(max_tokens=args.tokens, temperature=0, ignore_eos=True))):
            stamps.append(time.perf_counter())
        sleeping.clear()
        if r == 0: continue
        runs.append({k: [d * 1000 for _, d in v] for k, v in times.items()})
        starts = [t for t, _ in times["_decode"]]
        runs[-1]["step start to step start"] = [(b - a) * 1000 for a, b in zip(starts, starts[1:])]
        runs[-1]["consumer, token to token"] = [(b - a) * 1000 for a, b in zip(stamps[1:], stamps[2:])]
        gaps.append((starts[0], starts[-1]))
    during = [ms for t, ms in late if any(a <= t <= b for a, b in gaps)]
    late.clear(); sleeping.set(); await asyncio.sleep(2); sleeping.clear()
    idle = [ms for _, ms in late]
    await eng.shutdown()
    med = lambda xs: round(statistics.median(xs), 3) if xs else None
    rows = {k: med([x for run in runs for x in run.get(k, [])]) for k in runs[0]}
    res = dict(cpu=_cpu_name(), machine=platform.node(), model=args.model, tokens=args.tokens, repeats=args.repeats, start_s=round(start_s, 1),
               notes={k: v for k, v in eng.health().items() if k.startswith(("cpu_", "prefix"))}, median_ms=rows,
               sleeper_late_ms=dict(decoding_median=med(during), decoding_p90=round(sorted(during)[int(0.9 * len(during))], 3) if during else None,
                                    idle_median=med(idle), wakeups_decoding=len(during), wakeups_idle=len(idle)))
    out = Path(args.out); out.mkdir(parents=True, exist_ok=True)
    (out/"engine_step_profile.json").write_text(json.dumps(res, indent=1))
    print(json.dumps(res, indent=1))
    print("\n| part of a token | ms (median) |\n|---|---|")
    for k, v in rows.items(): print(f"| {k} | {v} |")

asyncio.run(main())
