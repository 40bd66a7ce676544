"""Training on several processes: the same job on 1 process and on N, through `llmft train` as users launch it.

Each row is one `llmft train` run (one thread per process, so N processes use N cores), the same data, steps and
global batch (`--global-batch` split evenly between the processes), fp32. Rows: one process, then N processes with
`distributed=ddp`, `fsdp` and (with DeepSpeed installed) `zero2` and `zero3`. Metric: the whole job's supervised
tokens per second (what `llmft train` records); scaling efficiency = tokens/s of N ÷ (N × tokens/s of one), the number
`llmft cost --scaling-from` puts in the cost report. Rows run --repeats times, round-robin; the median is reported.
Writes bench/out/train_scaling.{json,md}.
"""
import argparse, json, os, platform, shutil, statistics, subprocess, sys, tempfile
from pathlib import Path

p = argparse.ArgumentParser()
p.add_argument("--model", default="tiny"); p.add_argument("--processes", type=int, default=2)
p.add_argument("--steps", type=int, default=100); p.add_argument("--global-batch", type=int, default=16)
p.add_argument("--repeats", type=int, default=2)
p.add_argument("--out", default="bench/out")
args = p.parse_args()
bin_ = Path(sys.executable).parent
work = Path(tempfile.mkdtemp(prefix="llmft-scaling-"))
common = [f"model={args.model}", f"max_steps={args.steps}", "save_steps=100000", "eval_steps=100000", "logging_steps=50", "precision=fp32",
          "data.eval=null", "tracking.enabled=false"]

def deepspeed_installed()->bool:
    return subprocess.run([sys.executable, "-c", "import deepspeed"], capture_output=True).returncode == 0

rows = [("one process", 1, None)] + [(f"{args.processes} processes, {m}", args.processes, m) for m in ("ddp", "fsdp")]
if deepspeed_installed(): rows += [(f"{args.processes} processes, {m}", args.processes, m) for m in ("zero2", "zero3")]

def run(name:str, n:int, mode:str|None, i:int)->dict:
    out = work/f"{i}-{name.replace(' ', '_').replace(',', '')}"
    cfg = [*common, f"batch_size={args.global_batch // n}", f"output_dir={out}"] + ([f"distributed={mode}"] if mode else [])
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if n == 1: cmd = [str(bin_/"llmft"), "train", *cfg]
    else:
        cmd = [str(bin_/"accelerate"), "launch", "--multi_gpu", "--num_processes", str(n), "--num_machines", "1", "--mixed_precision", "no",
               "--dynamo_backend", "no", "-m", "llmft.cli", "train", *cfg]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode != 0: raise SystemExit(f"{name} failed:\n{r.stderr[-3000:]}")
    s = json.loads((out/"train_summary.json").read_text())
    shutil.rmtree(out, ignore_errors=True)
    return dict(tokens_per_s=s["tokens_per_s"], train_seconds=s["train_seconds"], train_loss=s["train_loss"], processes=s["processes"], distributed=s["distributed"])

results = {name: [] for name, _, _ in rows}
for i in range(args.repeats):
    for name, n, mode in rows:
        results[name].append(run(name, n, mode, i)); print(name, results[name][-1], flush=True)

cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
one = statistics.median(r["tokens_per_s"] for r in results["one process"])
table = []
for name, n, mode in rows:
    tps = statistics.median(r["tokens_per_s"] for r in results[name])
    table.append(dict(row=name, processes=n, distributed=results[name][0]["distributed"], tokens_per_s=tps, efficiency=round(tps / (n * one), 3),
                      train_loss=results[name][0]["train_loss"], runs=[r["tokens_per_s"] for r in results[name]]))
out = Path(args.out); out.mkdir(parents=True, exist_ok=True)
(out/"train_scaling.json").write_text(json.dumps(dict(machine=dict(cpu=cpu, cores=os.cpu_count(), python=platform.python_version()), model=args.model,
                                                     steps=args.steps, global_batch=args.global_batch, repeats=args.repeats, rows=table), indent=2))
md = [f"Model {args.model}, {args.steps} steps, global batch {args.global_batch}, fp32, one thread per process; CPU: {cpu}; median of {args.repeats}.", "",
      "| row | ran as | tokens/s (whole job) | scaling efficiency | train loss | runs |", "|---|---|---|---|---|---|"]
md += [f"| {r['row']} | {r['distributed']} | {r['tokens_per_s']:.0f} | {r['efficiency']} | {r['train_loss']:.9f} | {', '.join(f'{x:.0f}' for x in r['runs'])} |" for r in table]
(out/"train_scaling.md").write_text("\n".join(md) + "\n"); print("\n".join(md))
