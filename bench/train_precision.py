"""Does bf16 autocast train as well as fp32? The check behind `precision=auto` choosing bf16 (train chapter).

The same llmft run (model, data, LoRA, lr, one epoch) in fp32 and in bf16 autocast, each with two seeds (the seed sets
the data order and the adapters' initialisation). Every trained adapter is then scored in **fp32** on the same held-out
examples (`dataset_nll`, so the scoring precision is the same for all). bf16 holds if the loss it reaches differs from
fp32's (same seed) by less than one seed differs from the other (same precision). Writes bench/out/train_precision.{json,md}.
"""
import argparse, json, os, platform, shutil
from pathlib import Path
import torch
from llmft.config import TrainConfig, DataSettings, TrackingSettings
from llmft.train import train, load_finetuned, prepare_data, feature_collator, dataset_nll

p = argparse.ArgumentParser()
p.add_argument("--model", default="smollm2"); p.add_argument("--examples", type=int, default=256); p.add_argument("--eval-examples", type=int, default=100)
p.add_argument("--batch-size", type=int, default=16); p.add_argument("--lr", type=float, default=3e-4); p.add_argument("--seeds", default="0,1")
p.add_argument("--out", default="bench/out")
args = p.parse_args()
torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
out = Path(args.out); out.mkdir(parents=True, exist_ok=True)
data = DataSettings(max_train_examples=args.examples, max_eval_examples=args.eval_examples)
runs = {}
for seed in map(int, args.seeds.split(",")):
    for precision in ("fp32", "bf16"):
        cfg = TrainConfig(model=args.model, output_dir=str(out/f"precision-{precision}-{seed}"), max_steps=0, epochs=1, batch_size=args.batch_size, lr=args.lr,
                          seed=seed, precision=precision, save_steps=10**6, logging_steps=4, tracking=TrackingSettings(enabled=False), data=data.model_copy(update=dict(eval=None)))
        shutil.rmtree(cfg.output_dir, ignore_errors=True)
        s = train(cfg)
        model, tok = load_finetuned(s["adapter"])
        held_out = prepare_data(TrainConfig(model=args.model, data=data), tok)["validation"]
        scored = dataset_nll(model, held_out, feature_collator(tok.pad_token_id))
        runs[f"{precision} seed {seed}"] = dict(precision=precision, seed=seed, train_seconds=s["train_seconds"], held_out_loss=round(scored["loss"], 4),
                                              held_out_tokens=scored["tokens"], losses=[round(h["loss"], 4) for h in s["log_history"] if "loss" in h])
        print(precision, seed, runs[f"{precision} seed {seed}"], flush=True)
seeds = sorted({r["seed"] for r in runs.values()})
by = lambda prec, seed: runs[f"{prec} seed {seed}"]["held_out_loss"]
precision_gaps = [abs(by("bf16", s) - by("fp32", s)) for s in seeds]
seed_gaps = [abs(by(prec, seeds[0]) - by(prec, seeds[1])) for prec in ("fp32", "bf16")] if len(seeds) > 1 else []
report = dict(model=args.model, examples=args.examples, eval_examples=args.eval_examples, lr=args.lr, batch_size=args.batch_size, runs=runs,
              precision_gaps=precision_gaps, seed_gaps=seed_gaps, holds=bool(seed_gaps) and max(precision_gaps) < min(seed_gaps),
              machine=dict(platform=platform.platform(), cpu=next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "")))
(out/"train_precision.json").write_text(json.dumps(report, indent=2))
rows = "\n".join(f"| {k} | {r['held_out_loss']} | {r['train_seconds']} | {r['losses']} |" for k, r in runs.items())
(out/"train_precision.md").write_text(f"CPU: {report['machine']['cpu']}\n\n| run | held-out loss (scored in fp32) | train s | training loss every 4 steps |\n|---|---|---|---|\n{rows}\n\n"
                                      f"|bf16 − fp32|, same seed: {[round(g, 4) for g in precision_gaps]}; |seed 0 − seed 1|, same precision: {[round(g, 4) for g in seed_gaps]}; "
                                      f"bf16 within seed noise: **{report['holds']}**\n")
print((out/"train_precision.md").read_text())
