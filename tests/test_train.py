"Training as a user runs it: the CLI, a SIGKILL then resume, bad input, and two processes under accelerate."
import json, os, signal, subprocess, sys, time
from pathlib import Path
from conftest import run_cli

COMMON = ["batch_size=8", "logging_steps=5", "data.max_train_examples=400", "data.max_eval_examples=40", "eval_steps=1000"]

def adapter_tensors(folder):
    from safetensors.torch import load_file
    return load_file(Path(folder)/"adapter_model.safetensors")

def test_cli_train_lora_and_qlora(tmp_path, tiny_base):
    for name, extra in (("lora", []), ("qlora", ["quantization.bits=4"])):
        r = run_cli("train", f"output_dir={tmp_path/name}", f"tracking.store_dir={tmp_path}", "max_steps=15", "save_steps=15", *COMMON, *extra)
        assert r.returncode == 0, r.stderr[-2000:]
        out = json.loads(r.stdout[r.stdout.index("{"):])
        assert out["steps"] == 15 and out["run_id"] and out["eval_perplexity"] > 0
        assert (Path(out["adapter"])/"adapter_model.safetensors").exists()
    meta = json.loads((tmp_path/"qlora"/"adapter"/"llmft_adapter.json").read_text())
    assert meta["quantization"] == {"bits": 4, "quant_type": "nf4", "double_quant": True, "compute_dtype": "float32"}
    r = run_cli("export", tmp_path/"qlora"/"adapter", "--out", tmp_path/"merged", "--merge")
    assert r.returncode == 0, r.stderr[-2000:]
    assert (tmp_path/"merged"/"model.safetensors").exists() and not list((tmp_path/"merged").glob("*.bin"))

def test_sigkill_then_resume_matches_uninterrupted_run(tmp_path, tiny_base):
    args = ["max_steps=20", "save_steps=5", "lr=0.01", "precision=fp32", *COMMON]  # one precision for both runs (a timed auto could differ; its resume is in 03b)
    r = run_cli("train", f"output_dir={tmp_path/'straight'}", f"tracking.store_dir={tmp_path}", *args)
    assert r.returncode == 0, r.stderr[-2000:]
    exe = Path(sys.executable).parent/"llmft"
    out = tmp_path/"killed"
    proc = subprocess.Popen([str(exe), "train", f"output_dir={out}", f"tracking.store_dir={tmp_path}", *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ.copy())
    deadline = time.time() + 300
    while time.time() < deadline and not (out/"checkpoints"/"checkpoint-10").exists() and proc.poll() is None: time.sleep(0.02)
    proc.send_signal(signal.SIGKILL); proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (out/"adapter").exists()
    run_id = json.loads((out/"llmft_run.json").read_text())["run_id"]
    r = run_cli("train", f"output_dir={out}", f"tracking.store_dir={tmp_path}", "resume=true", *args)
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads(r.stdout[r.stdout.index("{"):])["run_id"] == run_id
    a, b = adapter_tensors(tmp_path/"straight"/"adapter"), adapter_tensors(out/"adapter")
    assert a.keys() == b.keys() and all((a[k] - b[k]).abs().max() < 1e-5 for k in a)
    import mlflow
    run = mlflow.MlflowClient(f"sqlite:///{tmp_path.resolve()}/mlflow.db").get_run(run_id)
    assert run.info.status == "FINISHED" and "resumed_at" in run.data.tags
    r = run_cli("train", f"output_dir={out}", f"tracking.store_dir={tmp_path}", *args)  # a fresh run over this run's checkpoints
    assert r.returncode == 2 and "holds checkpoints of an earlier run" in r.stderr and "continue that run with resume=true" in r.stderr, r.stderr[-2000:]
    assert len(mlflow.MlflowClient(f"sqlite:///{tmp_path.resolve()}/mlflow.db").search_runs([run.info.experiment_id])) == 2  # no run made for the refused start

def test_cli_train_bad_inputs_are_clear(tmp_path):
    r = run_cli("train", "lora.target_modules=[qkv]", f"output_dir={tmp_path/'x'}", "tracking.enabled=false")
    assert r.returncode == 2 and "unknown target module(s) ['qkv']" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("train", "lora.rank=8")
    assert r.returncode == 2 and "unknown key 'lora.rank'" in r.stderr
    bad = tmp_path/"bad.jsonl"; bad.write_text('{"instruction": "x"}\n')
    r = run_cli("train", f"data.train={bad}", f"output_dir={tmp_path/'y'}", "tracking.enabled=false")
    assert r.returncode == 1 and "bad.jsonl:1: field 'output' is missing" in r.stderr
    r = run_cli("train", "resume=true", f"output_dir={tmp_path/'nothing'}", "tracking.enabled=false")
    assert r.returncode == 2 and "no complete checkpoint" in r.stderr
    r = run_cli("export", tmp_path, "--out", tmp_path/"o", "--merge")
    assert r.returncode == 2 and "not an adapter folder" in r.stderr

def test_accelerate_two_cpu_processes(tmp_path, tiny_base):
    "The same training under `accelerate launch` with 2 CPU processes (gloo): one adapter, one MLflow run."
    launcher = Path(sys.executable).parent/"accelerate"
    cmd = [str(launcher), "launch", "--cpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "-m", "llmft.cli", "train", f"output_dir={tmp_path/'ddp'}", f"tracking.store_dir={tmp_path}", "max_steps=6", "save_steps=6", *COMMON]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    state = json.loads((tmp_path/"ddp"/"checkpoints"/"checkpoint-6"/"trainer_state.json").read_text())
    assert state["global_step"] == 6
    assert (tmp_path/"ddp"/"adapter"/"adapter_model.safetensors").exists()
    import mlflow
    runs = mlflow.MlflowClient(f"sqlite:///{tmp_path.resolve()}/mlflow.db").search_runs([mlflow.MlflowClient(f"sqlite:///{tmp_path.resolve()}/mlflow.db").get_experiment_by_name("llmft").experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
