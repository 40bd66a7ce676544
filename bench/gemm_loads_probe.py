"""Issue 26, target 2 (one stream): SmolLM2's batch ≤ 4 decode package built with Inductor's C++ GEMM template as torch
2.13 writes it, against the same package built inside `whole_bf16_loads` (bf16 weights read one whole vector at a time,
not through a stack copy per half vector: see the 08g notebook), timed in turns in one process at batches 1 … 4.

A one-stream token runs the package at batch 1 (at batch 2 before the packages took batches from 1). The weights are SmolLM2's
(the offline GGUF, in bf16); the slot cache holds 4 × 512 places, context 200. Each package takes ~1–2 minutes to build.

    OMP_NUM_THREADS=2 python bench/gemm_loads_probe.py [--reps 40] [--out bench/results/gemm_loads_<date>.json]

Prints a Markdown table and writes JSON with the CPU's name and flags.
"""
import argparse, contextlib, datetime, json, statistics, tempfile, time
from pathlib import Path
import torch
from transformers import AutoModelForCausalLM
from llmft.base import build_imported
from llmft.serve.engine import forward_cpu
from llmft.serve.engine.forward_cpu import SlotForward, _build_package, _cpu_name
from llmft.serve.engine.kv_cache import SlotKVCache, step_mask

p = argparse.ArgumentParser(); p.add_argument("--reps", type=int, default=40); p.add_argument("--context", type=int, default=200)
p.add_argument("--out", default=f"bench/results/gemm_loads_{datetime.date.today()}.json")
args = p.parse_args()

model = AutoModelForCausalLM.from_pretrained(str(build_imported("smollm2")), dtype=torch.bfloat16).eval()
module = SlotForward(model, SlotKVCache(model.config, 4, 512, torch.bfloat16, "cpu"), compile=False).module
weights = sum(t.numel() * t.element_size() for n, t in module.named_parameters() if not n.startswith(("qkv.", "gate_up.")))
runs, built = {}, {}
with tempfile.TemporaryDirectory() as tmp, torch.no_grad():
    for name, loads in (("as torch writes it", contextlib.nullcontext), ("whole_bf16_loads", forward_cpu.whole_bf16_loads)):
        forward_cpu.whole_bf16_loads, kept = loads, forward_cpu.whole_bf16_loads
        try:
            t = time.time(); _build_package(module, 4, Path(tmp)/f"{len(runs)}.pt2"); built[name] = time.time() - t
        finally: forward_cpu.whole_bf16_loads = kept
        runs[name] = torch._inductor.aoti_load_package(str(Path(tmp)/f"{len(runs)}.pt2"))
    rows = []
    for B in (1, 2, 3, 4):
        pos = torch.full((B, 1), args.context)
        a = (pos * 0 + 1000, pos, torch.arange(B), step_mask(pos, args.context + 1, torch.bfloat16), torch.zeros(B, dtype=torch.long), module.k_cache, module.v_cache)
        times = {k: [] for k in runs}
        for run in runs.values(): run(*a); run(*a)
        for _ in range(args.reps):
            for k, run in runs.items():
                t = time.perf_counter(); run(*a); times[k].append(1000 * (time.perf_counter() - t))
        assert torch.equal(*(run(*a) for run in runs.values())), "the two packages' logits differ"
        rows.append(dict(batch=B, **{k: statistics.median(v) for k, v in times.items()}))
result = dict(cpu=_cpu_name(), torch=torch.__version__, reps=args.reps, context=args.context, weight_mb=weights / 1e6,
              built_s=built, step_ms_median=rows)
Path(args.out).parent.mkdir(parents=True, exist_ok=True); Path(args.out).write_text(json.dumps(result, indent=1))
print(f"CPU: {result['cpu']}\n\n| batch | as torch writes it (ms) | whole_bf16_loads (ms) | ratio | weights read at (GB/s, whole) |\n|---|---|---|---|---|")
for r in rows:
    a, b = r["as torch writes it"], r["whole_bf16_loads"]
    print(f"| {r['batch']} | {a:.2f} | {b:.2f} | {a / b:.2f}x | {weights / b / 1e6:.1f} |")
