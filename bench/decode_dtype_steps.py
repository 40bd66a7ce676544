"""Issue 26, targets 1 and 2 on a CPU without bf16 kernels: a decode step through the batch-32 package built in bf16 (the
weights' dtype) against one built from a float32 twin (`cpu_decode_dtype`), at batches 2 … 48.

Starts a `TransformersEngine` on SmolLM2 as `llmft serve --max-batch 48 --max-model-len 2048` runs it, waits for its
decode packages, then gets (builds once, ~3 minutes each, or loads from `LLMFT_HOME/aoti`) the batch-32 package in each
dtype and, in the engine thread (one OpenMP team), times decode steps at each batch, both packages in turns, context 200.

    OMP_NUM_THREADS=2 python bench/decode_dtype_steps.py [--reps 5]

Prints a Markdown table and writes bench/out/decode_dtype_steps.json.
"""
import argparse, asyncio, json, statistics, time
from pathlib import Path
import torch
from llmft.serve.engine import TransformersEngine, EngineSettings
from llmft.serve.engine.forward_cpu import decode_package, _cpu_name
from llmft.serve.engine.kv_cache import step_mask

p = argparse.ArgumentParser(); p.add_argument("--reps", type=int, default=5); p.add_argument("--context", type=int, default=200)
args = p.parse_args()

async def main():
    eng = TransformersEngine(EngineSettings(model="smollm2", max_batch=48, max_model_len=2048))
    await eng.start()
    while eng.health()["cpu_compile"].startswith("building"): await asyncio.sleep(2)
    m = eng.forward.module
    def work():
        pk = {str(dt).removeprefix("torch."): decode_package(m, 32, dtype=dt) for dt in (torch.bfloat16, torch.float32)}
        rows = []
        with torch.no_grad():
            for B in (2, 4, 8, 16, 32, 48):
                pos = torch.full((B, 1), args.context)
                a = (pos * 0 + 1000, pos, torch.arange(B), step_mask(pos, args.context + 1, torch.bfloat16), torch.zeros(B, dtype=torch.long), m.k_cache, m.v_cache)
                times = {k: [] for k in pk}
                for k, (run, _, _) in pk.items(): run(*a)
                for _ in range(args.reps):
                    for k, (run, _, _) in pk.items():
                        t = time.perf_counter(); run(*a); times[k].append(1000 * (time.perf_counter() - t))
                rows.append(dict(batch=B, **{f"{k}_ms": statistics.median(v) for k, v in times.items()}))
        return rows, {k: f"{how} in {s:.0f}s" for k, (_, how, s) in pk.items()}
    rows, how = await eng._in_engine_thread(work)
    out = dict(cpu=_cpu_name(), health={k: v for k, v in eng.health().items() if k.startswith("cpu")}, packages=how, context=args.context, reps=args.reps, rows=rows)
    await eng.shutdown()
    Path("bench/out").mkdir(parents=True, exist_ok=True); Path("bench/out/decode_dtype_steps.json").write_text(json.dumps(out, indent=1))
    print(out["cpu"], "|", out["health"].get("cpu_decode"), "|", how)
    print("| batch | bf16 package ms | float32 package ms | bf16 ÷ float32 |\n|---|---|---|---|")
    for r in rows: print(f"| {r['batch']} | {r['bfloat16_ms']:.1f} | {r['float32_ms']:.1f} | {r['bfloat16_ms'] / r['float32_ms']:.2f} |")

asyncio.run(main())
