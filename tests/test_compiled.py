"""The engine's compiled forward (`cpu_compile`), compiled for real: it takes ~30 s on two cores, so it is tested here once rather than in the notebook."""
import asyncio, threading
import pytest

torch = pytest.importorskip("torch")

def test_compiled_engine_gives_transformers_tokens_from_two_graphs(tiny_base):
    "Greedy tokens equal `generate`'s for requests that leave at different times (batch 5 down to 1), a one-token prompt included, and for prompts whose start comes from the prefix cache; serving compiles nothing after the start, and the engine thread compiles."
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from torch._dynamo.utils import counters
    from llmft.serve.engine import TransformersEngine, EngineSettings, GenerationRequest, SamplingParams
    tok, model = AutoTokenizer.from_pretrained(str(tiny_base)), AutoModelForCausalLM.from_pretrained(str(tiny_base)).eval()
    prompts = [tok(t).input_ids for t in ("Return the sum of", "Open the file", "class Foo:", "x = 1\ny =")] + [[tok.bos_token_id or 1]]
    new_tokens = [9, 3, 12, 6, 1]
    engine = TransformersEngine(EngineSettings(model=str(tiny_base), max_batch=8, cpu_compile=True, cpu_compile_background=False))
    prepare, compiled_in = engine.forward.prepare, []
    engine.forward.prepare = lambda e: (compiled_in.append(threading.current_thread().name), prepare(e))[1]
    async def run():
        await engine.start()
        graphs = counters["stats"]["unique_graphs"]
        async def one(i, ids, n):
            out = []
            async for o in engine.generate(GenerationRequest(f"c{i}", ids, SamplingParams(max_tokens=n, temperature=0, ignore_eos=True))): out += o.token_ids
            return out
        first = await asyncio.gather(*(one(i, p, n) for i, (p, n) in enumerate(zip(prompts, new_tokens))))
        alone = await one(9, prompts[2], 4)  # a batch of one (the packages take batches from 1)
        await one(10, shared, 2)  # its 3 full blocks go into the prefix cache
        cached = await asyncio.gather(*(one(11 + i, p, 6) for i, p in enumerate(with_prefix)))  # each computes only its tail (one token for the last)
        await engine.shutdown(0)
        return first, alone, cached, counters["stats"]["unique_graphs"] - graphs
    shared = tok("Return the sum of the two numbers given, and raise a ValueError when either is not a number. " * 3).input_ids[:49]
    with_prefix = [shared[:48] + tok(t).input_ids for t in (" Open the file", " x = 1")] + [shared]
    first, alone, cached, new_graphs = asyncio.run(run())
    assert engine.stats["prefix_hit_tokens"] == 3 * 48, engine.stats
    assert engine.health()["cpu_compile"].startswith("on: compiled in"), engine.health()
    assert new_graphs == 0 and engine.stats["decode_passes"] > 0
    assert compiled_in == ["llmft-engine"]  # the thread that steps: another live thread with OpenMP workers slows its steps
    for ids, n, got in zip(prompts + [prompts[2]] + with_prefix, new_tokens + [4, 6, 6, 6], first + [alone] + cached):
        ref = model.generate(torch.tensor([ids]), max_new_tokens=n, do_sample=False, eos_token_id=None, pad_token_id=tok.pad_token_id)[0, len(ids):].tolist()
        assert got == ref

def test_a_second_start_loads_the_decode_packages(tiny_base):
    "The decode packages the first start built (the test above, or this one) are loaded by the next start of the same model and settings, not built again, and give `generate`'s tokens (what changes a package's key: the notebook)."
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from llmft.serve.engine import TransformersEngine, EngineSettings, GenerationRequest, SamplingParams
    tok, model = AutoTokenizer.from_pretrained(str(tiny_base)), AutoModelForCausalLM.from_pretrained(str(tiny_base)).eval()
    ids = tok("Return the sum of").input_ids
    batches = []
    def start_and_generate(**kw):
        engine = TransformersEngine(EngineSettings(model=str(tiny_base), cpu_compile=True, cpu_compile_background=False, **kw))
        async def run():
            await engine.start()
            packages = engine.forward.packages
            for b, run in packages.items(): packages[b] = lambda *a, run=run: (batches.append(len(a[0])), run(*a))[1]
            out = [t async for o in engine.generate(GenerationRequest("r", ids, SamplingParams(max_tokens=8, temperature=0, ignore_eos=True))) for t in o.token_ids]
            await engine.shutdown(0)
            return out
        return asyncio.run(run()), engine.health()["cpu_compile"]
    start_and_generate(max_batch=8)
    got, note = start_and_generate(max_batch=8)
    assert "batch ≤ 4 loaded" in note and "batch ≤ 9 loaded" in note and "built" not in note, note
    assert batches and set(batches) == {1}, batches  # a lone stream's steps read one row, not two
    ref = model.generate(torch.tensor([ids]), max_new_tokens=8, do_sample=False, eos_token_id=None, pad_token_id=tok.pad_token_id)[0, len(ids):].tolist()
    assert got == ref

def test_missing_packages_build_in_the_background_while_the_engine_serves(tiny_base, tmp_path, monkeypatch):
    "A first start with settings whose packages are missing serves at once (decode through the prefill parts), `generate`'s tokens before and after the packages load between requests; the next start loads them."
    monkeypatch.setenv("LLMFT_HOME", str(tmp_path))  # missing on every run, not only the first in a checkout
    import time
    from pathlib import Path
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from llmft.serve.engine import TransformersEngine, EngineSettings, GenerationRequest, SamplingParams
    tok, model = AutoTokenizer.from_pretrained(str(tiny_base)), AutoModelForCausalLM.from_pretrained(str(tiny_base)).eval()
    prompts = [tok(t).input_ids for t in ("Return the sum of", "class Foo:", "x = 1\ny =")]
    refs = [model.generate(torch.tensor([ids]), max_new_tokens=7, do_sample=False, eos_token_id=None, pad_token_id=tok.pad_token_id)[0, len(ids):].tolist() for ids in prompts]
    settings = EngineSettings(model=str(tiny_base), max_batch=6, cpu_compile=True)  # 7 slots: packages no other test builds
    async def tokens(engine):
        async def one(i, ids):
            return [t async for o in engine.generate(GenerationRequest(f"b{i}", ids, SamplingParams(max_tokens=7, temperature=0, ignore_eos=True))) for t in o.token_ids]
        return await asyncio.gather(*(one(i, p) for i, p in enumerate(prompts)))
    engine = TransformersEngine(settings)
    async def run():
        await engine.start()
        at_start, builder = engine.health()["cpu_compile"], engine.forward.builder
        before = await tokens(engine)
        t0 = time.time()
        while engine.health()["cpu_compile"].startswith("building") and time.time() - t0 < 600: await asyncio.sleep(0.5)
        after, note = await tokens(engine), engine.health()["cpu_compile"]
        t1 = time.time(); rc = await asyncio.to_thread(builder.wait, 60)  # it exits on its own once its last package is in
        await engine.shutdown(0)
        return at_start, builder, before, after, note, rc, time.time() - t1
    at_start, builder, before, after, note, rc, exit_s = asyncio.run(run())
    assert at_start.startswith("building: decode packages for batch ≤ 4, batch ≤ 7"), at_start
    assert before == refs and after == refs
    assert note.startswith("on: compiled in") and "batch ≤ 7 built in the background" in note, note
    saved = [Path(a) for a in builder.args[5::3]]  # python -c code pid thread (saved step, hint, package) …
    assert rc == 0 and saved and not any(p.exists() for p in saved), (rc, exit_s)
    again = TransformersEngine(settings)
    async def restart():
        await again.start(); out = await tokens(again); await again.shutdown(0); return out
    assert asyncio.run(restart()) == refs
    assert again.forward.builder is None and "batch ≤ 7 loaded" in again.health()["cpu_compile"], again.health()

def test_a_background_build_ends_with_its_engine(tiny_base):
    "The builder gets SIGTERM when the engine thread ends (or finds it gone when it starts), exits 143 removing the exported steps it was given, and leaves no package behind."
    from pathlib import Path
    from llmft.serve.engine import TransformersEngine, EngineSettings
    engine = TransformersEngine(EngineSettings(model=str(tiny_base), max_batch=5, cpu_compile=True, cpu_small_batch_decode=False))
    async def run(): await engine.start(); await engine.shutdown(0)
    asyncio.run(run())
    builder, (_, package, _) = engine.forward.builder, next(iter(engine.forward.pending.values()))
    assert builder.wait(30) == 128 + 15
    assert not package.exists() and not any(Path(a).exists() for a in builder.args[5::3])

def test_a_saved_step_holds_no_slot_cache(tiny_base, tmp_path, monkeypatch):
    "The exported step handed to the background builder keeps the weights but not the slot cache it was traced with (for SmolLM2 at 48 × 2048: 2.6 GB and 23 s to save, against 273 MB and 3 s)."
    from pathlib import Path
    from transformers import AutoModelForCausalLM
    from llmft.serve.engine.kv_cache import SlotKVCache
    from llmft.serve.engine import forward_cpu
    model = AutoModelForCausalLM.from_pretrained(str(tiny_base)).eval()
    cache = SlotKVCache(model.config, 9, 1024, torch.float32, "cpu")
    f = forward_cpu.SlotForward(model, cache, compile=False)
    started = []
    monkeypatch.setattr(forward_cpu.subprocess, "Popen", lambda cmd, **kw: started.append(cmd))  # no builder: only what it would be given
    with torch.inference_mode(): forward_cpu.start_package_builds(f.module, [(4, forward_cpu.package_path(f.module, 4, tmp_path))])
    saved = Path(started[0][5])
    cache_bytes = sum(t.nbytes for t in cache.k + cache.v)
    assert saved.stat().st_size < cache_bytes, (saved.stat().st_size, cache_bytes)
    assert torch.export.load(str(saved)).example_inputs is None
    args, _ = forward_cpu.load_step(saved).example_inputs  # what the builder compiles from: the cache back as zeros of its shapes
    assert [tuple(t.shape) for t in args[5]] == [tuple(t.shape) for t in cache.k] and not any(t.any() for t in args[5] + args[6])

def test_a_float32_decode_package_for_a_bf16_model(tiny_base, tmp_path, monkeypatch):
    "bf16 weights with `cpu_decode_dtype=float32` (auto chooses it where fp32 products are ≥ 2× faster: AVX2 alone): the big decode package is built from a float32 twin (health says so; its logits are float32) and gives the tokens of `generate` on the same weights in float32, as the fp32 prefill parts do before it loads."
    monkeypatch.setenv("LLMFT_HOME", str(tmp_path))  # built in the background on every run
    import time
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from llmft.serve.engine import TransformersEngine, EngineSettings, GenerationRequest, SamplingParams
    from llmft.serve.engine.kv_cache import step_mask
    tok = AutoTokenizer.from_pretrained(str(tiny_base))
    fm = AutoModelForCausalLM.from_pretrained(str(tiny_base), dtype=torch.bfloat16).float().eval()  # the bf16 weights, in fp32
    prompts = [tok(t).input_ids for t in ("Return the sum of", "class Foo:", "x = 1\ny =", "Open the file", "def f(", "import os")]
    refs = [fm.generate(torch.tensor([ids]), max_new_tokens=12, do_sample=False, eos_token_id=None, pad_token_id=tok.pad_token_id)[0, len(ids):].tolist() for ids in prompts]
    engine = TransformersEngine(EngineSettings(model=str(tiny_base), dtype="bfloat16", max_batch=6, cpu_compile=True, cpu_prefill_dtype="float32",
                                               cpu_decode_dtype="float32", cpu_small_batch_decode=False))
    async def tokens():
        async def one(i, ids):
            return [t async for o in engine.generate(GenerationRequest(f"f{i}-{time.time()}", ids, SamplingParams(max_tokens=12, temperature=0, ignore_eos=True))) for t in o.token_ids]
        return await asyncio.gather(*(one(i, p) for i, p in enumerate(prompts)))
    async def run():
        await engine.start()
        before, t0 = await tokens(), time.time()
        while engine.health()["cpu_compile"].startswith("building") and time.time() - t0 < 600: await asyncio.sleep(0.5)
        after = await tokens()
        await engine.shutdown(0)
        return before, after
    before, after = asyncio.run(run())
    health = engine.health()
    assert health["cpu_decode"] == "float32 for batches over 4 (cpu_decode_dtype=float32)", health
    assert "batch ≤ 7 built in the background, in at" in health["cpu_compile"] and health["cpu_compile"].endswith("(float32))"), health
    assert before == refs and after == refs
    pos = torch.full((2, 1), 3)
    m = engine.forward.module
    logits = engine.forward.packages[7](pos * 0, pos, torch.arange(2), step_mask(pos, 4, torch.bfloat16), pos[:, 0] * 0, m.k_cache, m.v_cache)
    assert logits.dtype == torch.float32 and m.qkv[0].dtype == torch.bfloat16

def test_whole_bf16_loads_change_how_weights_are_read_not_the_numbers(tmp_path):
    "A bf16 linear compiled with the C++ GEMM template as a decode package is (`_compile_package`, inside `whole_bf16_loads`), after the same graph was compiled as torch writes it: the package's kernels load the weights whole, and give bit-identical outputs."
    import zipfile
    from llmft.serve.engine import forward_cpu
    torch.manual_seed(0)
    lin = torch.nn.Linear(64, 48, bias=False).to(torch.bfloat16).eval()
    x = torch.randn(3, 64, dtype=torch.bfloat16)
    with torch.no_grad():
        program = torch.export.export(lin, (x,), dynamic_shapes=({0: torch.export.Dim("batch", min=2, max=8)},))
        plain = torch._inductor.aoti_compile_and_package(program, package_path=str(tmp_path/"plain.pt2"),
            inductor_configs=dict(freezing=True, max_autotune=True, max_autotune_gemm_backends="CPP"))
        forward_cpu._compile_package(program, 2, tmp_path/"whole.pt2")
    kernels = lambda p: "".join(zipfile.ZipFile(p).read(n).decode() for n in zipfile.ZipFile(p).namelist() if n.endswith(".cpp"))
    assert "load_fp32_from_bf16" not in kernels(plain) and "load_fp32_from_bf16" in kernels(tmp_path/"whole.pt2")
    a, b = torch._inductor.aoti_load_package(plain), torch._inductor.aoti_load_package(str(tmp_path/"whole.pt2"))
    for rows in (2, 3, 8):
        xs = torch.randn(rows, 64, dtype=torch.bfloat16)
        assert torch.equal(a(xs), b(xs))
        torch.testing.assert_close(b(xs).float(), xs.float() @ lin.weight.float().T, rtol=2e-2, atol=2e-2)
