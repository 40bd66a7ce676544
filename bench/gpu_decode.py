"""Decode-step cost of the transformers engine on a GPU (issue 6's GPU check), against plain `generate`.

A 0.5 B Llama shape (hidden 896, 24 layers, 14 heads, 2 KV heads, MLP 4864, vocab 32000), random bf16 weights,
256-token prompts, 128 greedy output tokens. Rows: plain `generate` (dynamic cache) at batch 1, and llmft's
TransformersEngine (continuous batching over its slot KV cache), eager and with CUDA graphs (`cuda_graphs`), at 1 and
16 concurrent requests: milliseconds per decode step = (last token time − first token time) / 127 per request, median
over requests; then the same after `fuse_projections` (q/k/v and gate/up as one product each), with graphs and
compiled + graphs. The graph rows also report how many leading tokens of one fixed greedy request match the eager engine's. Targets: issue 6,
≤ 1.5 ms per token at batch 1; issue 26, ≤ 1.0 ms by default. The last row compiles with Inductor's max_autotune and coordinate-descent tuning. Writes OUT/gpu_decode.{json,md}.
"""
import argparse, asyncio, collections, json, os, statistics, time
from pathlib import Path
import torch
from transformers import LlamaConfig, LlamaForCausalLM, AutoTokenizer
import llmft.serve.engine.scheduler as scheduler_module
from llmft.serve.engine.forward_cuda import StaticDecode
from llmft.serve.engine.loading import fuse_projections
from llmft.serve.engine import TransformersEngine, EngineSettings, GenerationRequest, SamplingParams

p = argparse.ArgumentParser()
p.add_argument("--tokenizer", required=True, help="any tokenizer folder (ids past its vocabulary decode to nothing)")
p.add_argument("--device", default="cuda"); p.add_argument("--layers", type=int, default=24)
p.add_argument("--new", type=int, default=128); p.add_argument("--out", default=os.environ.get("OUT", "bench/out"))
args = p.parse_args()
out = Path(args.out); out.mkdir(parents=True, exist_ok=True)
dev = torch.device(args.device); cuda = dev.type == "cuda"
cfg = LlamaConfig(hidden_size=896, intermediate_size=4864, num_hidden_layers=args.layers, num_attention_heads=14, num_key_value_heads=2,
                  vocab_size=32000, max_position_embeddings=4096, pad_token_id=0, eos_token_id=1)
torch.manual_seed(0)
model = LlamaForCausalLM(cfg).to(dev, torch.bfloat16).eval()
tok = AutoTokenizer.from_pretrained(args.tokenizer)
results = []
def sync():
    if cuda: torch.cuda.synchronize()
meta = dict(device=torch.cuda.get_device_name() if cuda else "cpu", torch=torch.__version__, layers=args.layers, new_tokens=args.new,
            date=time.strftime("%Y-%m-%d %H:%M"), target="<= 1.0 ms per token at batch 1 by default (issue 26)")
def emit(**kw):  # the JSON is rewritten after every row, so a run stopped at its time limit keeps what it measured
    print(json.dumps(kw), flush=True); results.append(kw)
    (out/"gpu_decode.json").write_text(json.dumps(dict(meta=meta, results=results), indent=1))

def plain_generate():
    x = torch.randint(2, 32000, (1, 256), device=dev); am = torch.ones_like(x)
    for i in range(3):
        sync(); t = time.perf_counter()
        model.generate(x, attention_mask=am, max_new_tokens=args.new, min_new_tokens=args.new, do_sample=False)
        sync(); dt = time.perf_counter() - t
    emit(row="generate_dynamic_b1", ms_per_step=round(1000 * dt / args.new, 2))

plain_next_tokens = scheduler_module.next_tokens
fixed_prompt = torch.randint(2, 32000, (256,), generator=torch.Generator().manual_seed(5)).tolist()
fixed_tokens = {}

async def engine_rows(graphs:bool, compiled:bool=False, fused:bool=False, autotune:bool=False):
    if autotune:  # Inductor's autotuned matmul templates and coordinate-descent tuning of its kernels' launch settings (slower to compile)
        import torch._inductor.config as ic
        ic.max_autotune, ic.coordinate_descent_tuning = True, True
    eng = TransformersEngine(EngineSettings(max_batch=16, max_model_len=1024, cuda_graphs=graphs, compile_decode=compiled), model=model, tokenizer=tok)
    if graphs and not cuda: eng.forward = StaticDecode(eng, graphs=False, compile=compiled)  # the same fixed-shape step, eager (to check the script)
    await eng.start()
    async def one(i, ids=None):
        ids = ids or torch.randint(2, 32000, (256,)).tolist()
        req = GenerationRequest(f"r{i}", ids, SamplingParams(max_tokens=args.new, temperature=0.0, ignore_eos=True))
        stamps, toks = [], []
        async for o in eng.generate(req): stamps.append(time.perf_counter()); toks += o.token_ids
        if i == -1: fixed_tokens[tag] = toks
        return stamps
    tag = (("graphs_compiled" if compiled else "graphs") if graphs else "eager") + ("_fused" if fused else "") + ("_autotune" if autotune else "")
    t0 = time.perf_counter()
    await one(-1, fixed_prompt)  # warm-up (and, with graphs, waits for the capture)
    warmup_s = time.perf_counter() - t0
    spent = collections.Counter()
    def timed(name, fn):
        def wrapper(*a, **kw):
            t = time.perf_counter(); r = fn(*a, **kw); spent[name] += time.perf_counter() - t; return r
        return wrapper
    eng._decode, eng._advance = timed("decode_step", eng._decode), timed("advance", eng._advance)  # whole step; its token handling
    scheduler_module.next_tokens = timed("next_tokens", plain_next_tokens)                          # argmax, waits for the GPU
    static = eng.forward if isinstance(eng.forward, StaticDecode) else None  # None: capture failed, decoding eagerly
    if static is not None: static.run = timed("forward_launch", static.run)
    if graphs:
        same = next((i for i, (a, b) in enumerate(zip(fixed_tokens[tag], fixed_tokens.get("eager", []))) if a != b), len(fixed_tokens[tag]))
        emit(row=f"llmft_engine_{tag}_status", cuda_graphs=eng.health()["cuda_graphs"], tokens_matching_eager=same, of=len(fixed_tokens[tag]), first_request_s=round(warmup_s, 1))
    for conc in (1, 16):
        passes_before, t = eng.stats["decode_passes"], time.perf_counter()
        runs = await asyncio.gather(*[one(i) for i in range(conc)])
        wall = time.perf_counter() - t
        steps = [1000 * (s[-1] - s[0]) / (len(s) - 1) for s in runs]
        passes = eng.stats["decode_passes"] - passes_before
        breakdown = {k: round(1000 * v / max(passes, 1), 3) for k, v in spent.items()}; spent.clear()
        emit(row=f"llmft_engine_{tag}_c{conc}", ms_per_step=round(statistics.median(steps), 2), ttft_ms=round(1000 * (min(s[0] for s in runs) - t), 1),
             out_tok_per_s=round(conc * args.new / wall, 1), decode_passes=eng.stats["decode_passes"], static_passes=eng.stats["static_decode_passes"],
             ms_per_pass=breakdown)
    if static is not None:  # the graph alone: replay and wait, no scheduling
        for b in (1, 16):
            ids, pos = torch.zeros(b, 1, dtype=torch.long, device=dev), torch.full((b, 1), 300, device=dev)
            with torch.inference_mode():
                for _ in range(5): static.run(ids, pos)
                sync(); t = time.perf_counter()
                for _ in range(100): static.run(ids, pos)
                sync()
            emit(row=f"{tag}_replay_only_b{b}", ms_per_step=round(10 * (time.perf_counter() - t), 3))
    await eng.shutdown(1.0)

for name, fn in (("generate", plain_generate), ("engine_eager", lambda: asyncio.run(engine_rows(False))), ("engine_graphs", lambda: asyncio.run(engine_rows(True))),
                 ("fuse", lambda: emit(row="fuse_projections", groups=fuse_projections(model))),
                 ("engine_graphs_fused", lambda: asyncio.run(engine_rows(True, fused=True))),
                 ("engine_graphs_compiled_fused", lambda: asyncio.run(engine_rows(True, compiled=True, fused=True))),
                 ("engine_graphs_compiled_fused_autotune", lambda: asyncio.run(engine_rows(True, compiled=True, fused=True, autotune=True)))):
    try: fn()
    except Exception as e: emit(row=name, error=repr(e)[:400])
lines = [f"{meta['device']}, 0.5B shape ({args.layers} layers), 256-token prompts, {args.new} new tokens", "", "| row | ms per decode step | out tok/s |", "|---|---|---|"]
lines += [f"| {r['row']} | {r.get('ms_per_step', r.get('error', r.get('cuda_graphs', ''))[:80])} | {r.get('out_tok_per_s', '')} |" for r in results]
(out/"gpu_decode.md").write_text("\n".join(lines) + "\n"); print("\n".join(lines))
