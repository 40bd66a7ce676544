"""One TRL `SFTTrainer` + PEFT run, for `bench/train_throughput.py` (run with the TRL environment's python: `make trl-env`).

Reads the examples llmft tokenized (input_ids and labels, -100 on prompt tokens: TRL keeps a `labels` column as it is), so
TRL trains on exactly the tokens and targets llmft's rows do. The base is loaded in fp32, as llmft and the plain Trainer
load it on a CPU; everything else is TRL's default unless `--set key=value` changes it (TRL 1.x's defaults include
bf16 autocast and gradient checkpointing). Prints one JSON line: seconds of `trainer.train()`, the loss curve, versions.
"""
import argparse, json, os, time
import torch, transformers, peft, trl
from datasets import Dataset
from peft import LoraConfig
from trl import SFTConfig, SFTTrainer

p = argparse.ArgumentParser()
p.add_argument("--model", required=True); p.add_argument("--data", required=True, help="JSONL of {input_ids, labels}")
p.add_argument("--out", required=True); p.add_argument("--batch-size", type=int, default=16); p.add_argument("--lr", type=float, default=3e-4)
p.add_argument("--max-length", type=int, default=256); p.add_argument("--logging-steps", type=int, default=4)
p.add_argument("--set", action="append", default=[], help="SFTConfig field=value (JSON values), e.g. gradient_checkpointing=false")
args = p.parse_args()
torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
rows = [json.loads(line) for line in open(args.data)]
ds = Dataset.from_list([dict(input_ids=r["input_ids"], labels=r["labels"]) for r in rows])
tok = transformers.AutoTokenizer.from_pretrained(args.model)
if tok.pad_token is None: tok.pad_token = tok.eos_token
model = transformers.AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32)
overrides = {k: json.loads(v) for k, v in (s.split("=", 1) for s in args.set)}
cfg = SFTConfig(output_dir=args.out, per_device_train_batch_size=args.batch_size, learning_rate=args.lr, num_train_epochs=1,
                max_length=args.max_length, logging_steps=args.logging_steps, save_strategy="no", report_to=[], use_cpu=True, seed=0,
                disable_tqdm=True, **overrides)
lora = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")
trainer = SFTTrainer(model=model, args=cfg, train_dataset=ds, processing_class=tok, peft_config=lora)
t0 = time.time(); result = trainer.train(); seconds = time.time() - t0
print(json.dumps(dict(seconds=round(seconds, 2), train_loss=result.training_loss, losses=[h["loss"] for h in trainer.state.log_history if "loss" in h],
                      bf16=cfg.bf16, gradient_checkpointing=cfg.gradient_checkpointing,
                      versions=dict(trl=trl.__version__, transformers=transformers.__version__, peft=peft.__version__, torch=torch.__version__))))
