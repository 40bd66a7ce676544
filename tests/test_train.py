"Training as a user runs it: the CLI, a SIGKILL then resume, bad input, and several processes under accelerate (DDP, FSDP, DeepSpeed ZeRO; one machine and two)."
import functools, json, os, signal, subprocess, sys, time
import pytest
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

# accelerate's `--multi_gpu` is its torchrun launcher; on a machine without a GPU its processes train on the CPU over gloo.
# (`--cpu` would start one process, whatever `--num_processes` says.)
LAUNCH = ["launch", "--multi_gpu", "--num_processes", "2", "--mixed_precision", "no", "--dynamo_backend", "no"]
SHORT = ["max_steps=10", "save_steps=10", "precision=fp32", *COMMON[1:]]  # the global batch is 8: 8 in one process, 4 in each of two

def launch(*args, machines:list[str]|None=None, cwd=None, timeout=600):
    "`accelerate launch … -m llmft.cli train ARGS` (one machine, or the flags of one of several) with one thread per process."
    cmd = [str(Path(sys.executable).parent/"accelerate"), *LAUNCH, *(machines or ["--num_machines", "1"]), "-m", "llmft.cli", "train", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd, env={**os.environ, "OMP_NUM_THREADS": "1"})

def summary_of(r):
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout[r.stdout.index("{"):])

def runs_in(store):
    import mlflow
    client = mlflow.MlflowClient(f"sqlite:///{Path(store).resolve()}/mlflow.db")
    return client.search_runs([client.get_experiment_by_name("llmft").experiment_id])

@functools.cache
def one_process(store:Path, quantized:bool)->dict:
    "The reference: the same job, global batch and data in one process."
    extra = ["quantization.bits=4"] if quantized else []
    return summary_of(run_cli("train", f"output_dir={store/('one-q' if quantized else 'one')}", f"tracking.store_dir={store/'ref'}", "batch_size=8", *SHORT, *extra))

@pytest.fixture(scope="module")
def store(tmp_path_factory): return tmp_path_factory.mktemp("distributed")

@pytest.mark.parametrize("mode,quantized", [("ddp", False), ("fsdp", False), ("fsdp", True), ("zero2", False), ("zero3", False)])
def test_two_cpu_processes_train_as_one(store, tiny_base, mode, quantized):
    """Two processes with `distributed=MODE` write the adapter one process writes (same files, keys, shapes, dtypes) and reach its loss:
    with the same data and global batch the two differ only by float rounding, so train and eval loss must agree within 1e-3 (relative)."""
    if mode.startswith("zero"): pytest.importorskip("deepspeed", reason="DeepSpeed is not installed (pip install 'llmft[deepspeed]')")
    from safetensors.torch import load_file
    out = store/f"{mode}{'-q' if quantized else ''}"
    s = summary_of(launch(f"distributed={mode}", "batch_size=4", f"output_dir={out}", f"tracking.store_dir={out}", *SHORT, *(["quantization.bits=4"] if quantized else [])))
    ref = one_process(store, quantized)
    assert (s["processes"], s["distributed"]) == (2, mode)  # what ran, not what was asked: accelerate alone would have made FSDP on CPUs DDP
    for k in ("train_loss", "eval_loss"): assert abs(s[k] - ref[k]) <= 1e-3 * ref[k], (k, s[k], ref[k])
    mine, theirs = Path(s["adapter"]), Path(ref["adapter"])
    assert sorted(p.name for p in mine.iterdir()) == sorted(p.name for p in theirs.iterdir())
    a, b = load_file(mine/"adapter_model.safetensors"), load_file(theirs/"adapter_model.safetensors")
    assert a.keys() == b.keys() and all(a[k].shape == b[k].shape and a[k].dtype == b[k].dtype for k in a)
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-3
    config = lambda p: {k: sorted(v) if isinstance(v, list) else v for k, v in json.loads((p/"adapter_config.json").read_text()).items()}
    assert config(mine) == config(theirs)
    if mode == "fsdp": assert (out/"checkpoints"/"checkpoint-10"/"pytorch_model_fsdp.bin").exists()  # FSDP's own checkpoint of the (adapter) state
    runs = runs_in(out)
    assert len(runs) == 1 and runs[0].info.status == "FINISHED" and runs[0].data.params["distributed"] == mode
    if mode == "ddp":  # the cost report's scaling table takes its 2-GPU efficiency from these two runs
        r = run_cli("cost", "--instance", "g6.xlarge", "--train-dir", theirs.parent, "--scaling-from", out, "--out", out/"cost")
        assert r.returncode == 0, r.stderr[-2000:]
        e = round(s["tokens_per_s"] / (2 * ref["tokens_per_s"]), 3)
        assert f"| 2 | {e} | measured (2 processes, {out}) |" in r.stdout

def two_machines(steps:int, workdir:Path):
    "Two launchers on this machine as machines 0 and 1 of a 2-process job, each in its own folder (its own disk); started, not waited for."
    import socket
    with socket.socket() as s: s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]
    args = ["batch_size=4", f"max_steps={steps}", "save_steps=5", "precision=fp32", *COMMON[1:], "output_dir=out", "tracking.store_dir=mlruns"]
    procs = []
    for rank in (0, 1):
        (workdir/f"m{rank}").mkdir(parents=True)
        machine = ["--num_machines", "2", "--machine_rank", str(rank), "--main_process_ip", "127.0.0.1", "--main_process_port", str(port)]
        procs.append(subprocess.Popen([str(Path(sys.executable).parent/"accelerate"), *LAUNCH, *machine, "-m", "llmft.cli", "train", *args], cwd=workdir/f"m{rank}", text=True,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "OMP_NUM_THREADS": "1"}))
    return procs

def test_two_machines_simulated(tmp_path, tiny_base):
    "`--num_machines 2 --machine_rank 0/1`: one job; machine 0's main process alone writes the adapter and the MLflow run."
    procs = two_machines(10, tmp_path)
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs[0][1][-2000:] + outs[1][1][-2000:]
    s = json.loads(outs[0][0][outs[0][0].index("{"):])
    assert (s["processes"], s["distributed"], s["steps"]) == (2, "ddp", 10) and outs[1][0].strip() == ""
    m0, m1 = tmp_path/"m0", tmp_path/"m1"
    assert (m0/"out"/"adapter"/"adapter_model.safetensors").exists() and len(runs_in(m0/"mlruns")) == 1
    assert not (m1/"out"/"adapter").exists() and not (m1/"mlruns").exists()
    assert {p.name for p in (m1/"out"/"checkpoints"/"checkpoint-10").iterdir()} == {"rng_state_1.pth"}  # the Trainer's per-process RNG state, nothing else

def test_a_crashed_machine_fails_the_run(tmp_path, tiny_base):
    "The process of machine 1 killed mid-run: both launchers exit with an error within a minute, and the MLflow run is FAILED, not RUNNING."
    import psutil
    procs = two_machines(3000, tmp_path)
    deadline = time.time() + 300
    while time.time() < deadline and not (tmp_path/"m0"/"out"/"checkpoints"/"checkpoint-5").exists() and procs[0].poll() is None: time.sleep(0.1)
    assert (tmp_path/"m0"/"out"/"checkpoints"/"checkpoint-5").exists(), procs[0].communicate()[1][-3000:]
    workers = psutil.Process(procs[1].pid).children()
    assert len(workers) == 1
    workers[0].kill()
    for p in procs: p.communicate(timeout=60)  # never hangs
    assert all(p.returncode != 0 for p in procs)
    runs = runs_in(tmp_path/"m0"/"mlruns")
    assert len(runs) == 1 and runs[0].info.status == "FAILED" and runs[0].data.tags["error"]
