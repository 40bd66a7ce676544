"""What constrained decoding costs: output tok/s at concurrency 16 with and without a JSON schema, on one `llmft serve`.

Three workloads, in turn for `--rounds` rounds on the same server (after a warm-up): `schema` (16 concurrent chat requests
with `response_format` json_schema, each writing until its JSON is complete), `free` (the same 16 without a constraint,
`ignore_eos`, each exactly as many tokens as the schema request of the same seed wrote: the same decode steps and batch
sizes) and `mixed` (8 of each in one batch). tok/s = completion tokens of a batch ÷ its wall-clock time, so the ratio is what
the masks add (llguidance computes one per constrained sequence per step, in the engine thread). Every schema answer is parsed
and validated; a failure is counted.

    python bench/structured_output.py                    # starts `llmft serve --model smollm2` (compiled; minutes to start)
    python bench/structured_output.py --url http://127.0.0.1:8000 --model smollm2

Writes bench/results/structured_output_<date>.json and prints a Markdown table.
"""
import argparse, concurrent.futures as cf, json, sys, time
from pathlib import Path
import httpx, jsonschema
from llmft.provenance import machine_info
from llmft.serve.process import ServerProcess, free_port, llmft_serve_command

SCHEMA = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 40}, "city": {"type": "string", "maxLength": 30},
                                           "tags": {"type": "array", "items": {"type": "string", "maxLength": 16}, "maxItems": 5}, "age": {"type": "integer"}},
          "required": ["name", "city", "tags", "age"], "additionalProperties": False}
QUESTION = "Make up a person: name, city, a few tags describing them, and age. Answer in JSON."

p = argparse.ArgumentParser()
p.add_argument("--url"); p.add_argument("--model", default="smollm2"); p.add_argument("--rounds", type=int, default=3)
p.add_argument("--concurrency", type=int, default=16); p.add_argument("--max-tokens", type=int, default=96); p.add_argument("--out", default="bench/results")
args = p.parse_args()

def one(url, k, constrained, n=None):
    "One chat request: constrained by the schema (up to --max-tokens), or free and exactly `n` tokens long."
    body = dict(model=args.model, messages=[{"role": "user", "content": QUESTION}], max_tokens=n or args.max_tokens, temperature=0.7, seed=k)
    body |= dict(response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": SCHEMA}}) if constrained else dict(ignore_eos=True)
    r = httpx.post(url + "/v1/chat/completions", json=body, timeout=600).json()
    ok = True
    if constrained:
        try: jsonschema.validate(json.loads(r["choices"][0]["message"]["content"]), SCHEMA)
        except Exception: ok = r["choices"][0]["finish_reason"] == "length" and None  # cut short by max_tokens: not a failure of the constraint
    return r["usage"]["completion_tokens"], ok

def batch(url, kind, seed, lengths):
    "16 concurrent requests; the free ones as long as the schema ones of `lengths` (the schema batch's token counts), so that both do the same steps."
    flags = {"free": [False] * args.concurrency, "schema": [True] * args.concurrency, "mixed": [i % 2 == 0 for i in range(args.concurrency)]}[kind]
    t0 = time.perf_counter()
    with cf.ThreadPoolExecutor(args.concurrency) as pool:
        res = list(pool.map(lambda a: one(url, *a), [(seed + i, f, None if f else lengths[i]) for i, f in enumerate(flags)]))
    wall = time.perf_counter() - t0
    return dict(kind=kind, tokens=sum(t for t, _ in res), wall_s=wall, tok_s=sum(t for t, _ in res) / wall, lengths=[t for t, _ in res],
                invalid=sum(ok is False for _, ok in res), truncated=sum(ok is None for _, ok in res))

server = None
if args.url is None:
    port = free_port()
    server = ServerProcess(llmft_serve_command("--model", args.model, "--max-batch", str(args.concurrency), port=port), f"http://127.0.0.1:{port}/health",
                           timeout=1200, name="llmft serve").start()
    url = f"http://127.0.0.1:{port}"
else: url = args.url.rstrip("/")
try:
    health = httpx.get(url + "/health").json()
    batch(url, "schema", 10_000, None)  # warm-up: the grammar tokenizer is made at the first constrained request
    rows = []
    for r in range(args.rounds):
        rows.append(batch(url, "schema", 1000 * r, None) | dict(round=r))
        for kind in ("free", "mixed"): rows.append(batch(url, kind, 1000 * r, rows[-1 if kind == "free" else -2]["lengths"]) | dict(round=r))
finally:
    if server: server.stop()
def cpu():
    "The CPU's model, family/model numbers and the flags that change PyTorch's kernels (compare runs only on the same CPU)."
    info = dict(l.split(":", 1) for l in Path("/proc/cpuinfo").read_text().splitlines() if ":" in l)
    info = {k.strip(): v.strip() for k, v in info.items()}
    return dict(model=info.get("model name"), family=info.get("cpu family"), number=info.get("model"), flags=sorted(set(info.get("flags", "").split()) & {"amx_tile", "amx_bf16", "avx512_bf16", "avx512f"}))

summary = {k: sorted(x["tok_s"] for x in rows if x["kind"] == k) for k in ("free", "schema", "mixed")}
med = {k: v[len(v) // 2] for k, v in summary.items()}
result = dict(machine=machine_info() | dict(cpu=cpu()), health=health, concurrency=args.concurrency, max_tokens=args.max_tokens, rows=rows, median_tok_s=med,
              schema_vs_free=med["schema"] / med["free"], mixed_vs_free=med["mixed"] / med["free"])
out = Path(args.out); out.mkdir(parents=True, exist_ok=True)
path = out/f"structured_output_{time.strftime('%Y-%m-%d')}.json"
path.write_text(json.dumps(result, indent=2))
print(f"| workload (c={args.concurrency}) | median tok/s | ratio to free | invalid | cut by max_tokens |\n|---|---:|---:|---:|---:|")
for k in ("free", "schema", "mixed"):
    print(f"| {k} | {med[k]:.0f} | {med[k] / med['free']:.2f} | {sum(x['invalid'] for x in rows if x['kind'] == k)} | {sum(x['truncated'] for x in rows if x['kind'] == k)} |")
print("written", path, file=sys.stderr)
