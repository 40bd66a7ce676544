"""Training throughput (CPU): llmft's trainer vs plain transformers Trainer + PEFT, and vs TRL's SFTTrainer + PEFT.

Same model, same examples (the sample dataset's first N training examples, tokenized once by llmft so
both see identical token ids and labels), same LoRA (r=16, all-linear), one epoch each, in one process.
Metric: supervised (response) tokens per second of training. Rows with bf16 autocast are compared only with
the plain trainer's bf16 row (same precision). This machine is noisy: every row runs --repeats times, round-robin (so drift hits all rows alike); ratios are
given from the fastest runs, the medians, and the median of per-round ratios (each run against the plain run of
its own round). With --trl-venv (`make trl-env`), two TRL rows run `bench/trl_sft.py` in that environment on the same
token ids and labels: TRL's defaults (bf16 autocast, gradient checkpointing) and the same with checkpointing off; every
row gets a ratio against TRL's defaults too. The `llmft` row is llmft's defaults (precision=auto: timed on this machine,
its timing counted in the row's seconds); the precision=fp32/bf16 rows give the two loss curves auto chooses between.
Writes bench/out/train_throughput.{json,md}.
"""
import argparse, json, os, platform, shutil, statistics, subprocess, time
from pathlib import Path
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments, DataCollatorForSeq2Seq
from peft import LoraConfig, get_peft_model
from llmft.base import build_base, resolve_model
from llmft.config import TrainConfig, DataSettings, TrackingSettings, LoraSettings
from llmft.train import train, prepare_data

p = argparse.ArgumentParser()
p.add_argument("--model", default="small"); p.add_argument("--examples", type=int, default=256)
p.add_argument("--batch-size", type=int, default=16); p.add_argument("--packed-batch-size", type=int, default=4)
p.add_argument("--max-length", type=int, default=256); p.add_argument("--out", default="bench/out")
p.add_argument("--repeats", type=int, default=2); p.add_argument("--trl-venv", default="", help="TRL's environment (make trl-env): adds the TRL rows")
p.add_argument("--rows", default="", help="row names separated by ';': run only these (plus their plain baseline)")
args = p.parse_args()
torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
out = Path(args.out); out.mkdir(parents=True, exist_ok=True)
base = str(build_base(args.model)) if args.model in ("tiny", "small") else resolve_model(args.model, 0)
tok = AutoTokenizer.from_pretrained(base)
data = DataSettings(eval=None, max_train_examples=args.examples, max_length=args.max_length)
feats = prepare_data(TrainConfig(model=base, data=data), tok)["train"].features
supervised = sum(sum(l != -100 for l in f.labels[1:]) for f in feats)
curves = {}  # row -> loss curve (and precision) of its latest run

def cpu_model() -> str:
    try: return next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration): return platform.processor()

def plain_trainer(bf16=False) -> float:
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM"))
    ds = [dict(input_ids=f.input_ids, labels=f.labels, attention_mask=[1] * len(f.input_ids)) for f in feats]
    targs = TrainingArguments(output_dir=str(out/"plain"), per_device_train_batch_size=args.batch_size, num_train_epochs=1, learning_rate=3e-4,
                              report_to=[], use_cpu=True, bf16=bf16, save_strategy="no", logging_steps=10**6, remove_unused_columns=False, disable_tqdm=True, seed=0)
    t = Trainer(model=model, args=targs, train_dataset=ds, data_collator=DataCollatorForSeq2Seq(tok, padding=True, label_pad_token_id=-100))
    t0 = time.time(); t.train(); return time.time() - t0

def trl(name, *settings) -> float:
    data_file = out/"trl_data.jsonl"
    if not data_file.exists(): data_file.write_text("".join(json.dumps(dict(input_ids=list(f.input_ids), labels=list(f.labels))) + "\n" for f in feats))
    cmd = [str(Path(args.trl_venv)/"bin"/"python"), str(Path(__file__).parent/"trl_sft.py"), "--model", base, "--data", str(data_file), "--out", str(out/"trl"),
           "--batch-size", str(args.batch_size), "--lr", "3e-4", "--max-length", str(args.max_length), *[a for s in settings for a in ("--set", s)]]
    r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": ""})
    if r.returncode: raise SystemExit(f"TRL row failed:\n{r.stderr[-3000:]}")
    res = json.loads(r.stdout.strip().splitlines()[-1]); curves[name] = dict(losses=res["losses"], bf16=res["bf16"], versions=res["versions"])
    return res["seconds"]

def llmft(**update) -> float:
    shutil.rmtree(out/"llmft", ignore_errors=True)  # each row trains afresh: an output folder holds one run (llmft refuses another's checkpoints)
    cfg = TrainConfig(model=base, output_dir=str(out/"llmft"), max_steps=0, epochs=1, batch_size=args.batch_size, lr=3e-4, save_steps=10**6,
                      logging_steps=4, tracking=TrackingSettings(enabled=False), data=data, lora=LoraSettings(r=16, alpha=32))
    name = update.pop("_name", None)  # the row's name, not a config field
    s = train(cfg.model_copy(update=update))
    if name: curves[name] = dict(losses=[h["loss"] for h in s["log_history"] if "loss" in h], precision=s["precision"])
    return s["train_seconds"] + s["precision"].get("timing_s", 0)  # a default run pays for its precision timing

packed = lambda n, **kw: llmft(data=data.model_copy(update=dict(packing=True, max_length=n)), batch_size=args.packed_batch_size * 256 // n, **kw)
rows = [("plain Trainer + PEFT", plain_trainer), ("llmft", lambda: llmft(_name="llmft")),
        ("llmft, precision=fp32", lambda: llmft(precision="fp32", _name="llmft, precision=fp32")),
        ("llmft, precision=bf16", lambda: llmft(precision="bf16", _name="llmft, precision=bf16")), ("llmft, lean_activations off", lambda: llmft(lean_activations=False)),
        ("llmft group_by_length", lambda: llmft(group_by_length=True)),
        ("llmft packing (256-token blocks)", lambda: packed(256)),
        ("llmft packing (256-token blocks), lean_activations off", lambda: packed(256, lean_activations=False)),
        ("llmft packing (128-token blocks)", lambda: packed(128)),
        ("plain Trainer + PEFT, bf16 autocast", lambda: plain_trainer(bf16=True)),
        ("llmft packing (128-token blocks), bf16 autocast", lambda: packed(128, precision="bf16"))]
TRL_DEFAULTS = "TRL SFTTrainer + PEFT (its defaults: bf16 autocast, gradient checkpointing)"
if args.trl_venv:
    rows += [(TRL_DEFAULTS, lambda: trl(TRL_DEFAULTS)),
             ("TRL SFTTrainer + PEFT, bf16 autocast, gradient checkpointing off", lambda: trl("TRL SFTTrainer + PEFT, bf16 autocast, gradient checkpointing off", "gradient_checkpointing=false"))]
if args.rows:  # the chosen rows, and the plain row of each one's precision
    chosen = [n for n, _ in rows if n in args.rows.split(";")]
    needed = set(chosen) | {"plain Trainer + PEFT" + (", bf16 autocast" if "bf16" in n else "") for n in chosen} | ({TRL_DEFAULTS} if args.trl_venv else set())
    rows = [(n, f) for n, f in rows if n in needed]
runs = {name: [] for name, _ in rows}
for rep in range(args.repeats):
    for name, fn in rows:
        runs[name].append(round(fn(), 2)); print(rep, name, runs[name][-1], "s", flush=True)
results = {name: dict(seconds=min(t), median_seconds=sorted(t)[len(t) // 2], runs=t, supervised_tokens_per_s=round(supervised / min(t), 1)) for name, t in runs.items()}
for name, r in results.items():  # against the plain trainer at the same precision; from medians too, to show how much the statistic matters
    ref = results.get("plain Trainer + PEFT" + (", bf16 autocast" if "bf16" in name else ""))
    if ref:  # (a TRL row chosen alone with --rows has no plain bf16 row beside it)
        r["ratio_vs_plain"] = round(ref["seconds"] / r["seconds"], 2)
        r["median_ratio_vs_plain"] = round(ref["median_seconds"] / r["median_seconds"], 2)
        paired = sorted(a / b for a, b in zip(ref["runs"], r["runs"]))  # each round against the plain run of the same round: drift cancels
        r["paired_ratios"], r["median_paired_ratio"] = [round(x, 2) for x in paired], round(statistics.median(paired), 2)
    if TRL_DEFAULTS in results:  # against TRL's defaults, whatever the row's precision: the comparison a user makes
        trl_ref = results[TRL_DEFAULTS]
        r["ratio_vs_trl"], r["median_paired_ratio_vs_trl"] = round(trl_ref["seconds"] / r["seconds"], 2), round(statistics.median(a / b for a, b in zip(trl_ref["runs"], r["runs"])), 2)
    if name in curves: r |= curves[name]
report = dict(model=args.model, examples=args.examples, supervised_tokens=supervised, batch_size=args.batch_size, packed_batch_size=args.packed_batch_size,
              max_length=args.max_length, repeats=args.repeats, machine=dict(platform=platform.platform(), cpu=cpu_model(), cpus=os.cpu_count(), torch_threads=torch.get_num_threads()), results=results)
(out/"train_throughput.json").write_text(json.dumps(report, indent=2))
vs_trl = lambda v: f" {v['ratio_vs_trl']}× ({v['median_paired_ratio_vs_trl']}×) |" if "ratio_vs_trl" in v else ""
vs_plain = lambda v: f" {v['ratio_vs_plain']}× | {v['median_ratio_vs_plain']}× | {v['median_paired_ratio']}× |" if "ratio_vs_plain" in v else " – | – | – |"
table = "\n".join(f"| {k} | {' / '.join(map(str, v['runs']))} | {v['supervised_tokens_per_s']} |{vs_plain(v)}{vs_trl(v)}" for k, v in results.items())
trl_head = (" vs TRL's defaults (fastest; median per-round) |", "---|") if TRL_DEFAULTS in results else ("", "")
curve_lines = "".join(f"\n- {k}: losses every 4 steps {[round(x, 3) for x in v['losses']]}" + (f"; precision {v['precision']['precision']} ({v['precision']['why']})" if "precision" in v else "")
                      for k, v in results.items() if "losses" in v)
(out/"train_throughput.md").write_text(f"CPU: {report['machine']['cpu']}\n\n| trainer | seconds, each run | supervised tok/s (fastest run) | vs plain, same precision (fastest runs) | (medians) | (median of per-round ratios) |{trl_head[0]}\n"
                                      f"|---|---|---|---|---|---|{trl_head[1]}\n{table}\n{curve_lines}\n")
print((out/"train_throughput.md").read_text())
