"""Does llama.cpp read llmft's GGUF export as llmft meant it? Greedy output of `llama-server` on an exported GGUF against
transformers' greedy output of the same merged model, on chat prompts rendered by the model's own template.

llama-server is built from the vendored source in the llama-cpp-python sdist (a benchmark dependency, never a test one):
    pip download --no-deps --no-binary :all: llama-cpp-python && tar xzf llama_cpp_python-*.tar.gz
    cmake -S llama_cpp_python-*/vendor/llama.cpp -B build -DLLAMA_CURL=OFF -DGGML_NATIVE=ON && cmake --build build --target llama-server -j2
Then, with a fine-tune merged (`llmft export ADAPTER --merge --out M`) and exported (`llmft export ADAPTER --gguf F.gguf`):
    python bench/llamacpp_gguf.py --server build/bin/llama-server --gguf F.gguf --merged M --out bench/results/llamacpp_gguf.json
"""
import argparse, json, platform, tempfile
from pathlib import Path
import httpx
from llmft.serve.process import ServerProcess, free_port

QUESTIONS = ["Convert 4 km to meters.", "Uppercase the word river.", "Add 21 and 17.", "Reverse the word stone.",
             "What is the city in the record?\n\nname=Ann; city=Rome; age=33", "Give the record as JSON with keys name, city, age.\n\nage=31; city=Oslo; name=Mia",
             "What is the capital of France?", "Write one sentence about rain.", "Name three colours.", "What is 7 times 8?"]

def hf_greedy(folder, n):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    tok, model = AutoTokenizer.from_pretrained(folder), AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    out = []
    for q in QUESTIONS:
        ids = tok.apply_chat_template([dict(role="user", content=q)], add_generation_prompt=True, return_dict=True)["input_ids"]
        with torch.no_grad(): gen = model.generate(torch.tensor([ids]), max_new_tokens=n, do_sample=False)[0, len(ids):].tolist()
        out.append(dict(question=q, prompt_ids=ids, tokens=gen, text=tok.decode(gen, skip_special_tokens=True)))
    return out, tok

def main():
    a = argparse.ArgumentParser(); a.add_argument("--server", required=True); a.add_argument("--gguf", required=True); a.add_argument("--merged", required=True)
    a.add_argument("--tokens", type=int, default=32); a.add_argument("--out", default="bench/results/llamacpp_gguf.json"); args = a.parse_args()
    want, tok = hf_greedy(args.merged, args.tokens)
    port = free_port()
    proc = ServerProcess([args.server, "-m", args.gguf, "--port", port, "-t", "2", "-c", "2048", "-np", "1"], f"http://127.0.0.1:{port}/health",
                         log=Path(tempfile.gettempdir())/"llamacpp_gguf_server.log", timeout=120, name="llama-server").start()
    url, rows = proc.url, []
    try:
        for w in want:
            text = tok.decode(w["prompt_ids"])
            ids = httpx.post(url + "/tokenize", json=dict(content=text, add_special=False, parse_special=True)).json()["tokens"]
            r = httpx.post(url + "/completion", json=dict(prompt=w["prompt_ids"], n_predict=args.tokens, temperature=0, top_k=1, cache_prompt=False,
                                                        return_tokens=True), timeout=120).json()
            got = [t for t in r.get("tokens", []) if t not in (tok.eos_token_id,)]
            hf = [t for t in w["tokens"] if t != tok.eos_token_id]
            same = sum(x == y for x, y in zip(hf, got))
            rows.append(dict(question=w["question"], tokenization_equal=ids == w["prompt_ids"], hf_text=w["text"], llamacpp_text=r.get("content"),
                             agree=same, of=max(len(hf), len(got)), identical=hf == got))
    finally: proc.stop(timeout=30)
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
    rep = dict(gguf=args.gguf, merged=args.merged, cpu=cpu, prompts=len(rows), identical=sum(r["identical"] for r in rows),
               token_agreement=sum(r["agree"] for r in rows) / max(1, sum(r["of"] for r in rows)), tokenization_equal=sum(r["tokenization_equal"] for r in rows), rows=rows)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True); Path(args.out).write_text(json.dumps(rep, indent=2))
    print(json.dumps({k: v for k, v in rep.items() if k != "rows"}, indent=2))
    for r in rows: print(("==" if r["identical"] else "!="), repr(r["hf_text"])[:60], "|", repr(r["llamacpp_text"])[:60])

if __name__ == "__main__": main()
