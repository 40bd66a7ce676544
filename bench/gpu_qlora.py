"""QLoRA vs LoRA training memory and speed on a GPU (issue 4's GPU check), in one process.

A Llama-shaped model with random weights (default: the 1.1 B shape of the issue — hidden 2048, 22 layers,
32 heads, 4 KV heads, MLP 5632, vocab 32000), batch 4 x 512 tokens, LoRA r=16 on every linear layer, train mode,
AdamW, no gradient checkpointing unless a row says so. Rows:

  lora_peft          the baseline: bf16 base, PEFT's LoRA, bf16 autocast (what a plain transformers+PEFT run does)
  qlora_peft_prep    PEFT's recipe: 4-bit NF4 base + prepare_model_for_kbit_training (fp32 upcast), autocast
  lora_llmft         bf16 base, llmft's adapters + lean_activations, autocast (what `llmft train` does on a GPU)
  qlora_llmft        4-bit NF4 base (double quant, bf16 compute), llmft's adapters + lean_activations (what `llmft train` does)
  qlora_llmft_mlpckpt  as qlora_llmft, the MLPs recomputed whole in the backward pass (mlp_activations=checkpoint)
  qlora_llmft_ckpt   as qlora_llmft with full gradient checkpointing

Peak = torch.cuda.max_memory_allocated from before the model is loaded to the last step; tokens/s from the median
step time of the steps after the first two. Ratios are against lora_peft measured in the same run. `--device cpu
--shape mini` runs the same code on a small shape (to check the script, not to measure). Writes
OUT/gpu_qlora.{json,md} and, with --profile, a profiler table of the qlora_llmft row.
"""
import argparse, gc, json, os, platform, statistics, time
from pathlib import Path
import torch
from transformers import LlamaConfig, LlamaForCausalLM, AutoModelForCausalLM, BitsAndBytesConfig
from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
from llmft.lora import apply_lora
from llmft.config import LoraSettings, QuantSettings
from llmft.qlora import load_4bit_base
from llmft.memory import lean_activations

SHAPES = {"1.1B": dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22, num_attention_heads=32, num_key_value_heads=4, vocab_size=32000),
          "mini": dict(hidden_size=256, intermediate_size=704, num_hidden_layers=2, num_attention_heads=8, num_key_value_heads=2, vocab_size=4000)}
ROWS = ["lora_peft", "qlora_peft_prep", "lora_llmft", "qlora_llmft", "qlora_llmft_mlpckpt", "qlora_llmft_ckpt"]
p = argparse.ArgumentParser()
p.add_argument("--shape", default="1.1B", choices=SHAPES); p.add_argument("--device", default="cuda")
p.add_argument("--batch", type=int, default=4); p.add_argument("--seq", type=int, default=512); p.add_argument("--steps", type=int, default=8)
p.add_argument("--rows", default=";".join(ROWS)); p.add_argument("--out", default=os.environ.get("OUT", "bench/out"))
p.add_argument("--profile", action="store_true")
args = p.parse_args()
dev = torch.device(args.device); cuda = dev.type == "cuda"
out = Path(args.out); out.mkdir(parents=True, exist_ok=True)

def build(shape:str)->str:
    path = f"/tmp/llmft_bench_{shape}"
    if not os.path.exists(path):
        torch.manual_seed(0)
        with torch.device(dev): m = LlamaForCausalLM(LlamaConfig(max_position_embeddings=2048, **SHAPES[shape])).to(torch.bfloat16)
        m.save_pretrained(path); del m; gc.collect()
        if cuda: torch.cuda.empty_cache()
    return path

def peak_reset():
    gc.collect()
    if cuda: torch.cuda.empty_cache(); torch.cuda.reset_peak_memory_stats()

def model_for(row:str, path:str):
    q = QuantSettings(bits=4, compute_dtype="bfloat16")
    lora = LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", lora_dropout=0.0, task_type="CAUSAL_LM")
    if row == "lora_peft": return get_peft_model(AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16).to(dev), lora), True
    if row == "qlora_peft_prep":
        bnb = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=torch.bfloat16)
        m = AutoModelForCausalLM.from_pretrained(path, quantization_config=bnb, dtype=torch.bfloat16, device_map={"": dev.index or 0} if cuda else None)
        return get_peft_model(prepare_model_for_kbit_training(m, use_gradient_checkpointing=False), lora), True
    if row == "lora_llmft":
        m = apply_lora(AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16).to(dev), LoraSettings())
        m.switched = lean_activations(m); return m, True
    m = apply_lora(load_4bit_base(path, q), LoraSettings())  # what `llmft train` does with quantization.bits=4
    if row == "qlora_llmft_ckpt":
        m.get_base_model().gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False}); m.enable_input_require_grads()
    m.switched = lean_activations(m, mlp="checkpoint" if row == "qlora_llmft_mlpckpt" else "recompute")
    return m, False

def step(m, opt, x, autocast):
    with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=autocast): loss = m(input_ids=x, labels=x).loss
    loss.backward(); opt.step(); opt.zero_grad(set_to_none=True)
    return loss

def sync():
    if cuda: torch.cuda.synchronize()

def run(row:str, path:str)->dict:
    peak_reset(); t_load = time.perf_counter()
    m, autocast = model_for(row, path); m.config.use_cache = False; m.train()
    t_load = time.perf_counter() - t_load
    opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-4)
    torch.manual_seed(1); x = torch.randint(0, SHAPES[args.shape]["vocab_size"], (args.batch, args.seq), device=dev)
    times, losses = [], []
    for _ in range(args.steps):
        sync(); t = time.perf_counter()
        losses.append(step(m, opt, x, autocast).item()); sync(); times.append(time.perf_counter() - t)
    st = statistics.median(times[2:])
    res = dict(row=row, peak_gib=round(torch.cuda.max_memory_allocated() / 2**30, 3) if cuda else None, step_s=round(st, 4),
               tok_per_s=round(args.batch * args.seq / st), loss_first=round(losses[0], 4), loss_last=round(losses[-1], 4),
               load_s=round(t_load, 1), switched=getattr(m, "switched", None),
               trainable=sum(p.numel() for p in m.parameters() if p.requires_grad))
    if args.profile and row == "qlora_llmft":
        from torch.profiler import profile, ProfilerActivity
        acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
        with profile(activities=acts) as prof:
            for _ in range(2): step(m, opt, x, autocast)
            sync()
        key = "self_cuda_time_total" if cuda else "self_cpu_time_total"
        (out/"gpu_qlora_profile.txt").write_text(prof.key_averages().table(sort_by=key, row_limit=30))
    del m, opt; peak_reset()
    print(json.dumps(res), flush=True)
    return res

path = build(args.shape)
results = []
for row in args.rows.split(";"):
    try: results.append(run(row, path))
    except Exception as e:
        results.append(dict(row=row, error=repr(e)[:400])); print(json.dumps(results[-1]), flush=True); peak_reset()
base = next((r for r in results if r["row"] == "lora_peft" and "error" not in r), None)
for r in results:
    if base and "error" not in r:
        r["tok_ratio"] = round(r["tok_per_s"] / base["tok_per_s"], 3)
        if cuda: r["peak_ratio"] = round(r["peak_gib"] / base["peak_gib"], 3)
import transformers, peft
try: import bitsandbytes; bnb_version = bitsandbytes.__version__
except ImportError: bnb_version = None
meta = dict(shape=args.shape, batch=args.batch, seq=args.seq, steps=args.steps, device=torch.cuda.get_device_name() if cuda else platform.processor() or "cpu",
            torch=torch.__version__, transformers=transformers.__version__, peft=peft.__version__, bitsandbytes=bnb_version,
            date=time.strftime("%Y-%m-%d %H:%M"), target="QLoRA peak <= 0.5x lora_peft at >= 0.7x its tokens/s")
(out/"gpu_qlora.json").write_text(json.dumps(dict(meta=meta, results=results), indent=1))
lines = [f"{meta['device']}, {args.shape}, batch {args.batch} x {args.seq}, torch {torch.__version__}", "",
         "| row | peak GiB | x lora_peft | tok/s | x lora_peft | loss first → last |", "|---|---|---|---|---|---|"]
for r in results:
    lines.append(f"| {r['row']} | error: {r['error'][:80]} | | | | |" if "error" in r else
                 f"| {r['row']} | {r['peak_gib']} | {r.get('peak_ratio', '')} | {r['tok_per_s']} | {r.get('tok_ratio', '')} | {r['loss_first']} → {r['loss_last']} |")
(out/"gpu_qlora.md").write_text("\n".join(lines) + "\n"); print("\n".join(lines))
