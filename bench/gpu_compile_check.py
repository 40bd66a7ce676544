"""Is `compile_decode` safe on a trained model? (issue 26, target 6) — greedy tokens of the compiled decode step against eager.

The real chat model (SmolLM2-135M-Instruct, imported from its GGUF file as `llmft` imports it) with a LoRA adapter trained
by `llmft train` merged into it (a merged adapter is served with CUDA graphs; an attached one decodes eagerly), in bf16.
Ten prompts from the sample test split (two of each task), each alone, rendered in the model's chat template; 128 greedy
tokens each (`ignore_eos`, so every prompt gives 128; the first end-of-turn is reported too). Rows: the engine eager
(`cuda_graphs=False`), with CUDA graphs (the default), and compiled + CUDA graphs (`compile_decode`). For each graph row and
prompt: the index of the first token that differs from eager (128 = all equal) and, where one differs, how close eager's
top two logits were there (a near-tie flips under any rounding change). Also ms per decode step (median over prompts).
Writes OUT/gpu_compile_check.{json,md}.
"""
import argparse, asyncio, json, os, statistics, time
from pathlib import Path
import torch

p = argparse.ArgumentParser()
p.add_argument("--gguf", required=True); p.add_argument("--adapter", required=True, help="an adapter folder written by llmft train")
p.add_argument("--device", default="cuda"); p.add_argument("--new", type=int, default=128); p.add_argument("--prompts", type=int, default=10)
p.add_argument("--out", default=os.environ.get("OUT", "bench/out"))
args = p.parse_args()
out = Path(args.out); out.mkdir(parents=True, exist_ok=True)
from transformers import AutoModelForCausalLM, AutoTokenizer
import peft
from llmft.gguf_io import import_gguf
from llmft.serve.engine import TransformersEngine, EngineSettings, GenerationRequest, SamplingParams
from llmft.serve.engine.forward_cuda import StaticDecode

dev = torch.device(args.device); cuda = dev.type == "cuda"
results, meta = [], dict(device=torch.cuda.get_device_name() if cuda else "cpu", torch=torch.__version__, new_tokens=args.new, date=time.strftime("%Y-%m-%d %H:%M"))
def emit(**kw):
    print(json.dumps(kw), flush=True); results.append(kw)
    (out/"gpu_compile_check.json").write_text(json.dumps(dict(meta=meta, results=results), indent=1))

t = time.time()
base_dir = import_gguf(args.gguf, Path("/tmp/g26_smollm2_base"), force=True)
tok = AutoTokenizer.from_pretrained(base_dir)
model = peft.PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.bfloat16), args.adapter).merge_and_unload().to(dev).eval()
emit(row="load", seconds=round(time.time() - t, 1), adapter=json.loads((Path(args.adapter)/"adapter_config.json").read_text()).get("r"))

rows = [json.loads(l) for l in (Path(__file__).parent.parent/"llmft/assets/sample/test.jsonl").read_text().splitlines()]
by_task = {}
for r in rows: by_task.setdefault(r["task"], []).append(r)
picked = [r for i in range(args.prompts) for rs in by_task.values() if len(rs) > i for r in [rs[i]]][:args.prompts]
prompts = [tok.apply_chat_template([{"role": "user", "content": r["instruction"]}], add_generation_prompt=True, tokenize=True, return_dict=False) for r in picked]
prompts = [list(x["input_ids"]) if hasattr(x, "keys") else list(x) for x in prompts]
eot = set(filter(None, [tok.eos_token_id, tok.convert_tokens_to_ids("<|im_end|>")]))

async def run(tag, graphs, compiled):
    t = time.time()
    eng = TransformersEngine(EngineSettings(max_batch=16, max_model_len=1024, cuda_graphs=graphs, compile_decode=compiled), model=model, tokenizer=tok)
    if graphs and not cuda: eng.forward = StaticDecode(eng, graphs=False, compile=compiled)  # the fixed-shape step, eager (checks this script on a CPU)
    await eng.start()
    toks, steps = [], []
    for i, ids in enumerate(prompts):
        stamps, got = [], []
        async for o in eng.generate(GenerationRequest(f"{tag}{i}", ids, SamplingParams(max_tokens=args.new, temperature=0.0, ignore_eos=True))):
            stamps.append(time.perf_counter()); got += o.token_ids
        toks.append(got); steps.append(1000 * (stamps[-1] - stamps[1]) / max(len(stamps) - 2, 1))
    emit(row=tag, path=eng.health().get("cuda_graphs"), start_and_run_s=round(time.time() - t, 1), ms_per_step=round(statistics.median(steps), 3))
    await eng.shutdown(1.0)
    return toks

def margin(prefix):
    "Top-1 minus top-2 logit of the merged model (eager, plain forward) after `prefix`."
    with torch.inference_mode(): top = model(torch.tensor([prefix], device=dev)).logits[0, -1].float().topk(2).values
    return round(float(top[0] - top[1]), 4)

eager = asyncio.run(run("eager", False, False))
emit(row="eager_first_end_of_turn", at=[next((j for j, x in enumerate(t) if x in eot), None) for t in eager],
     answers=[tok.decode(t[:next((j for j, x in enumerate(t) if x in eot), len(t))]) for t in eager])
for tag, compiled in (("graphs", False), ("graphs_compiled", True)):
    try: got = asyncio.run(run(tag, True, compiled))
    except Exception as e: emit(row=tag, error=repr(e)[:400]); continue
    first = [next((j for j, (a, b) in enumerate(zip(g, e)) if a != b), min(len(g), len(e))) for g, e in zip(got, eager)]
    emit(row=f"{tag}_vs_eager", first_difference=first, prompts_all_equal=sum(f == args.new for f in first), of=len(first),
         eager_top2_margin_at_difference=[margin(ids + e[:f]) if f < args.new else None for ids, e, f in zip(prompts, eager, first)])
lines = [f"{meta['device']}, smollm2 + merged trained adapter, bf16, {len(prompts)} prompts x {args.new} greedy tokens", "", "| row | result |", "|---|---|"]
lines += [f"| {r['row']} | {json.dumps({k: v for k, v in r.items() if k not in ('row', 'answers')})[:300]} |" for r in results]
(out/"gpu_compile_check.md").write_text("\n".join(lines) + "\n"); print("\n".join(lines))
