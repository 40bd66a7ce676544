"""A probe for issue 26's targets 2 and 3 (one stream, start-up): the engine's decode step (`SlotLlama`, SmolLM2-135M's
shape with random bf16 weights) three ways, on this CPU:

- `torch.compile` as the engine runs it today (dynamic shapes, freezing: oneDNN-packed weights). Its compiled code is
  not cached across starts: AOTAutograd refuses frozen graphs and the FX graph cache can't pickle mkldnn tensors.
- AOTInductor packages (`torch.export` with a dynamic batch and context, `aoti_compile_and_package` with freezing and
  Inductor's C++ GEMM template, autotuned at an example batch `--hints`), the slot cache passed in and written in
  place. A package is a file: loading it is the whole cost of a later start.

Prints and writes bench/out/decode_aoti_probe.{json,md}: compile and load times, ms per decode step at batch 2/16/48,
and the largest logit difference from the eager step (bf16 rounding).

    OMP_NUM_THREADS=2 python bench/decode_aoti_probe.py
"""
import argparse, json, os, platform, time
from pathlib import Path
import torch
import torch._inductor.config as ic
from transformers import LlamaConfig, LlamaForCausalLM
from llmft.serve.engine.kv_cache import SlotKVCache, step_mask
from llmft.serve.engine.forward_cpu import _slot_llama_class

p = argparse.ArgumentParser()
p.add_argument("--layers", type=int, default=30); p.add_argument("--slots", type=int, default=48)
p.add_argument("--max-len", type=int, default=2048); p.add_argument("--hints", default="4,32")
p.add_argument("--out", default="bench/out")
args = p.parse_args()
out = Path(args.out); out.mkdir(parents=True, exist_ok=True)
os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(out/"inductor_probe"))
torch.manual_seed(0)
cfg = LlamaConfig(hidden_size=576, intermediate_size=1536, num_hidden_layers=args.layers, num_attention_heads=9, num_key_value_heads=3,
                  vocab_size=49152, tie_word_embeddings=True)
S, L = args.slots, args.max_len
cache = SlotKVCache(cfg, S, L, torch.bfloat16, "cpu")
slot = _slot_llama_class()(LlamaForCausalLM(cfg).to(torch.bfloat16).eval(), cache).eval()

class CacheAsInput(torch.nn.Module):
    "The decode step with the slot cache's tensors as inputs, so an exported program writes them in place."
    def __init__(self, m): super().__init__(); self.m = m
    def forward(self, ids, positions, rows, mask, last, ks, vs):
        self.m.k_cache, self.m.v_cache = ks, vs
        return self.m(ids, positions, rows, mask, last)

def step_inputs(B, at):
    pos = torch.full((B, 1), at)
    return torch.randint(0, 1000, (B, 1)), pos, torch.arange(B), step_mask(pos, at + 1, torch.bfloat16), torch.zeros(B, dtype=torch.long)

def ms(f, n=20):
    f(); t = time.perf_counter()
    for _ in range(n): f()
    return (time.perf_counter() - t) / n * 1000

frozen = dict(freezing=True)
rows, batches = [], (2, 16, S)
with torch.no_grad():
    probe = step_inputs(4, 200)
    ref = slot(*probe).float()
    compiled, t = torch.compile(slot, dynamic=True), time.time()
    with ic.patch(**frozen), torch.fx.experimental._config.patch(use_duck_shape=False):
        compiled(*step_inputs(S, 200)); first = time.time() - t  # the engine compiles with a full batch
        row = dict(way="torch.compile (frozen, oneDNN)", compile_s=first, load_s=None, max_logit_diff=(compiled(*probe).float() - ref).abs().max().item())
        row.update({f"ms_b{B}": ms(lambda: compiled(*step_inputs(B, 200))) for B in batches})
    rows.append(row)
    for hint in map(int, args.hints.split(",")):
        b, l = torch.export.Dim("b", min=2, max=S), torch.export.Dim("l", min=2, max=L - 1)
        t = time.time()
        ep = torch.export.export(CacheAsInput(slot), (*step_inputs(hint, 5), cache.k, cache.v),
                                 dynamic_shapes=dict(ids={0: b}, positions={0: b}, rows={0: b}, mask={0: b, 3: l}, last={0: b}, ks=[None] * args.layers, vs=[None] * args.layers))
        path = torch._inductor.aoti_compile_and_package(ep, package_path=str(out/f"decode_probe_hint{hint}.pt2"),
                                                        inductor_configs=dict(frozen, max_autotune=True, max_autotune_gemm_backends="CPP,ATEN"))
        built, t = time.time() - t, time.time()
        run = torch._inductor.aoti_load_package(path)
        row = dict(way=f"AOTInductor, C++ GEMM autotuned at batch {hint}", compile_s=built, load_s=time.time() - t,
                   max_logit_diff=(run(*probe, cache.k, cache.v).float() - ref).abs().max().item(), package_mb=Path(path).stat().st_size / 2**20)
        row.update({f"ms_b{B}": ms(lambda: run(*step_inputs(B, 200), cache.k, cache.v)) for B in batches})
        rows.append(row)
        print(row, flush=True)

cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
fam = [next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith(k)), "?") for k in ("cpu family", "model\t")]
res = dict(cpu=cpu, family=fam[0], model=fam[1], threads=torch.get_num_threads(), torch=torch.__version__, layers=args.layers, slots=S, rows=rows)
(out/"decode_aoti_probe.json").write_text(json.dumps(res, indent=1))
md = [f"CPU: {cpu} (family {fam[0]}, model {fam[1]}), {torch.get_num_threads()} threads, torch {torch.__version__}; context 201 tokens", "",
      "| decode step | compile s | load s | " + " | ".join(f"ms, batch {B}" for B in batches) + " | max logit diff vs eager |", "|---|---|---|" + "---|" * len(batches) + "---|"]
md += [f"| {r['way']} | {r['compile_s']:.0f} | " + ("–" if r["load_s"] is None else f"{r['load_s']:.1f}") + " | "
       + " | ".join(f"{r[f'ms_b{B}']:.1f}" for B in batches) + f" | {r['max_logit_diff']:.3f} |" for r in rows]
(out/"decode_aoti_probe.md").write_text("\n".join(md) + "\n")
print("\n".join(md))
