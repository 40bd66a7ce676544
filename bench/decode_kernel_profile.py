"""Where a one-stream decode step's time goes inside the engine's decode package (issue 26, target 2).

Builds the engine's own decode package (`llmft.serve.engine.forward_cpu._build_package`: the same export and Inductor
settings) for SmolLM2-135M's shape with random bf16 weights, with Inductor's per-kernel profiling compiled in
(`cpp.enable_kernel_profile`), then runs steps at batch `--batch` (1: one stream; before the packages took batches from 1, a stream ran at 2 with a padding row) under
`torch.profiler` and sums the time by kernel kind: the GEMM template kernels, the other generated kernels (norms,
rotary, SiLU), and the ATen calls the package makes (attention, cache writes). With the weight bytes each step reads
and the read bandwidth from `bench/mem_bandwidth.py`, it says how far the GEMMs are from streaming the weights.

    OMP_NUM_THREADS=2 python bench/decode_kernel_profile.py [--hint 4] [--context 200] [--steps 30] [--read-gbs 25]

Writes `bench/results/decode_kernel_profile_<date>.json`.
"""
import argparse, collections, datetime, json, tempfile, time
from pathlib import Path
import torch
import torch._inductor.config as ic
from transformers import LlamaConfig, LlamaForCausalLM
from llmft.serve.engine.kv_cache import SlotKVCache, step_mask
from llmft.serve.engine.forward_cpu import _slot_llama_class, _build_package, _cpu_name

p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
p.add_argument("--hint", type=int, default=4, help="the batch the package's GEMMs are autotuned at (the engine's: 4 and 32)")
p.add_argument("--layers", type=int, default=30); p.add_argument("--slots", type=int, default=48)
p.add_argument("--max-len", type=int, default=2048); p.add_argument("--context", type=int, default=200)
p.add_argument("--steps", type=int, default=30); p.add_argument("--batch", type=int, default=1)
p.add_argument("--read-gbs", type=float, default=None, help="this CPU's read bandwidth (bench/mem_bandwidth.py), for the floor")
p.add_argument("--package", default=None, help="reuse a package built by an earlier run")
p.add_argument("--backends", default=None, help="GEMM backends autotuning chooses from, instead of the engine's (e.g. CPP)")
a = p.parse_args()
torch.manual_seed(0)
cfg = LlamaConfig(hidden_size=576, intermediate_size=1536, num_hidden_layers=a.layers, num_attention_heads=9, num_key_value_heads=3,
                  vocab_size=49152, tie_word_embeddings=True)
cache = SlotKVCache(cfg, a.slots, a.max_len, torch.bfloat16, "cpu")
slot = _slot_llama_class()(LlamaForCausalLM(cfg).to(torch.bfloat16).eval(), cache).eval()
weight_bytes = sum(t.nbytes for n, t in slot.named_parameters() if not n.startswith(("qkv.", "gate_up.")))  # the embedding once: tied, it is the lm_head a step reads whole
folder = Path(tempfile.mkdtemp(prefix="llmft-kprof-"))
path = Path(a.package) if a.package else folder/"decode.pt2"
t = time.time()
if a.backends:  # the engine's build, with another choice of GEMM backends
    compile_package = torch._inductor.aoti_compile_and_package
    torch._inductor.aoti_compile_and_package = lambda *args, inductor_configs, **kw: compile_package(*args, inductor_configs={**inductor_configs, "max_autotune_gemm_backends": a.backends}, **kw)
if not a.package:
    with torch.no_grad(), ic.patch({"cpp.enable_kernel_profile": True}): _build_package(slot, a.hint, path)
built = time.time() - t
run = torch._inductor.aoti_load_package(str(path))

pos = torch.full((a.batch, 1), a.context)
args = (torch.randint(0, 1000, (a.batch, 1)), pos, torch.arange(a.batch), step_mask(pos, a.context + 1, torch.bfloat16),
        torch.zeros(a.batch, dtype=torch.long), cache.k, cache.v)
with torch.no_grad():
    for _ in range(3): run(*args)
    t = time.perf_counter()
    for _ in range(a.steps): run(*args)
    step_ms = (time.perf_counter() - t) / a.steps * 1e3
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        for _ in range(a.steps): run(*args)

def kind(name:str)->str:
    "GEMM template kernels, other generated kernels, or the ATen call `name` the package makes."
    if "_gemm_" in name: return "generated GEMM (C++ template)"
    if "_cpp_fused_" in name: return "attention and cache writes (generated)" if "softmax" in name or "index_put" in name else "other generated kernels"
    return name.removeprefix("aoti_torch_cpu_")
by = collections.defaultdict(lambda: [0.0, 0])
kernels = []
for e in prof.key_averages():
    if e.key.startswith("ProfilerStep") or e.key in ("AOTIModelPackageLoader::run",): continue
    us = e.self_cpu_time_total / a.steps
    kernels.append(dict(name=e.key, us_per_step=us, calls_per_step=e.count / a.steps))
    k = by[kind(e.key)]; k[0] += us; k[1] += e.count / a.steps
kernels.sort(key=lambda k: -k["us_per_step"])
groups = sorted(([k, v[0] / 1e3, v[1]] for k, v in by.items()), key=lambda g: -g[1])
res = dict(date=datetime.date.today().isoformat(), cpu=_cpu_name(), threads=torch.get_num_threads(), torch=torch.__version__,
           hint=a.hint, backends=a.backends or "engine's", batch=a.batch, context=a.context, build_s=built, step_ms=step_ms, weight_mb=weight_bytes / 1e6,
           groups=[dict(kind=g[0], ms_per_step=g[1], calls_per_step=g[2]) for g in groups], kernels=kernels[:60], package=str(path))
if a.read_gbs: res["floor_ms"] = weight_bytes / 1e9 / a.read_gbs * 1e3
out = Path(__file__).parent/"results"/f"decode_kernel_profile_{res['date']}_hint{a.hint}_b{a.batch}{'_' + a.backends if a.backends else ''}.json"
out.write_text(json.dumps(res, indent=1))
print(f"{res['cpu']}\nbuilt in {built:.0f}s; step at batch {a.batch}, context {a.context + 1}: {step_ms:.2f} ms (unprofiled); weights {weight_bytes / 1e6:.0f} MB"
      + (f"; floor {res['floor_ms']:.2f} ms at {a.read_gbs} GB/s" if a.read_gbs else ""))
print("\n| kind | ms a step (profiled) | calls a step |\n|---|---|---|")
for g in groups[:15]: print(f"| {g[0]} | {g[1]:.2f} | {g[2]:.0f} |")
print("\ntop kernels:"); [print(f"  {k['us_per_step']:8.1f} us  x{k['calls_per_step']:.0f}  {k['name'][:100]}") for k in kernels[:25]]
print(out)
