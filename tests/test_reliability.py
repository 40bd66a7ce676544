"Hostile input, faults and a short soak against a live `llmft serve`; the long soak is bench/soak.py."
import json, subprocess, sys
from pathlib import Path
import httpx, pytest, schemathesis
from hypothesis import settings, HealthCheck
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import status_code_conformance, content_type_conformance, response_schema_conformance
from conftest import run_cli, ROOT
from test_serve import Server

@pytest.fixture(scope="module")
def live(tiny_base):
    s = Server("--model", "tiny", "--max-model-len", "96", "--max-batch", "8", "--max-waiting", "64")
    yield s
    s.stop()

def test_fuzz_every_endpoint_against_its_own_schema(live):
    "schemathesis over the server's own OpenAPI schema: no 5xx, no hang, every status and body as documented."
    from hypothesis import given
    schema = schemathesis.openapi.from_url(live.url + "/openapi.json")
    ops = [r.ok() for r in schema.get_all_operations()]
    assert {op.label for op in ops} >= {"POST /v1/completions", "POST /v1/chat/completions", "GET /v1/models", "GET /health", "GET /metrics"}
    for op in ops:
        @given(case=op.as_strategy())
        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case):
            case.call_and_validate(base_url=live.url, checks=[not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance], timeout=60)
        check()

def test_hostile_bodies(live):
    post = lambda **kw: httpx.post(live.url + "/v1/completions", timeout=60, **kw)
    ten_mb = post(headers={"Content-Type": "application/json"}, content=b'{"model": "tiny", "prompt": "' + b"x" * 10_000_000 + b'"}')
    assert ten_mb.status_code == 413
    chunked = post(headers={"Content-Type": "application/json"}, content=iter([b'{"model": "tiny", "prompt": "'] + [b"y" * 100_000] * 20 + [b'"}']))
    assert chunked.status_code == 413  # no Content-Length: counted as it arrives
    for body in ([], "just a string", {"model": "tiny", "prompt": ["x"] * 5, "n": 0}, {"model": "tiny", "prompt": {"nested": [[[]]]}},
                 {"model": "tiny", "prompt": "x", "max_tokens": -5}, {"model": "tiny", "prompt": "x", "stop": ["a", "b", "c", "d", "e"]},
                 {"model": "tiny", "prompt": "x", "stream": True, "stream_options": "yes"}):
        r = post(json=body)
        assert r.status_code == 400 and r.json()["error"]["code"] == 400, (body, r.text)
    for raw in (b'{"model": "tiny", "prompt": "x", "temperature": Infinity}', b'{"model": "tiny", "prompt": "\xff\xfe bad utf-8"}'):
        r = post(headers={"Content-Type": "application/json"}, content=raw)
        assert r.status_code == 400 and r.json()["error"]["code"] == 400, (raw, r.text)
    r = post(json={"model": "ghost-adapter", "prompt": "x"}); assert r.status_code == 404
    r = post(json={"model": "tiny", "prompt": "caf\u00e9 \U0001F600 ok", "max_tokens": 2}); assert r.status_code == 200  # non-ASCII is fine
    assert httpx.get(live.url + "/health").json()["status"] == "ok"

def test_abandoned_after_first_byte_and_server_stays_healthy(live):
    for _ in range(5):
        with httpx.stream("POST", live.url + "/v1/chat/completions", timeout=30, json=dict(model="tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=60, stream=True)) as r:
            r.iter_raw().__next__()
    r = httpx.post(live.url + "/v1/completions", json=dict(model="tiny", prompt="The", max_tokens=4), timeout=30)
    assert r.status_code == 200 and httpx.get(live.url + "/health").json()["running"] <= 1

def test_corrupt_adapter_is_a_clear_startup_error(tmp_path, tiny_base):
    bad = tmp_path/"adapter"; bad.mkdir()
    (bad/"adapter_config.json").write_text(json.dumps({"r": 8, "target_modules": ["q_proj"], "peft_type": "LORA", "base_model_name_or_path": str(tiny_base)}))
    (bad/"adapter_model.safetensors").write_bytes(b"\x00\x01garbage")
    exe = Path(sys.executable).parent/"llmft"
    r = subprocess.run([str(exe), "serve", "--model", "tiny", "--port", "1", "--adapter", f"x={bad}"], capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "corrupt or truncated" in r.stderr and "Traceback" not in r.stderr

def test_pickle_weights_are_refused(tmp_path, tiny_base):
    import shutil, torch
    from transformers import AutoModelForCausalLM
    m = tmp_path/"pickled"; shutil.copytree(tiny_base, m)
    (m/"model.safetensors").unlink()
    torch.save(AutoModelForCausalLM.from_pretrained(tiny_base).state_dict(), m/"pytorch_model.bin")
    exe = Path(sys.executable).parent/"llmft"
    r = subprocess.run([str(exe), "serve", "--model", str(m), "--port", "1"], capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "safetensors" in r.stderr.lower()

def test_unwritable_or_full_output_fails_before_training(tmp_path):
    (tmp_path/"file").write_text("x")
    r = run_cli("train", f"output_dir={tmp_path/'file'/'run'}", "tracking.enabled=false")
    assert r.returncode == 2 and "is not writable" in r.stderr
    r = run_cli("train", f"output_dir={tmp_path/'run'}", "tracking.enabled=false", "min_free_mb=1000000000")
    assert r.returncode == 2 and "MB free where output_dir" in r.stderr

def test_short_soak_no_5xx_no_leak(tmp_path, tiny_base):
    "A bounded soak (the long one is bench/soak.py): mixed streaming, concurrency above the batch size."
    r = subprocess.run([sys.executable, str(ROOT/"bench"/"soak.py"), "--seconds", "15", "--concurrency", "12", "--max-batch", "4", "--max-waiting", "6",
                        "--out", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    rep = json.loads((tmp_path/"soak.json").read_text())
    assert rep["sent"] > 50 and rep["server_errors_5xx"] == 0 and rep["healthy_after"] and rep["unanswered"] == 0
    assert rep["stream_errors"] == 0 and rep["streams_without_done"] == 0, rep["problem_samples"]
    assert set(rep["by_status"]) <= {"200", "503"} and rep["by_status"].get("200", 0) > 0
    assert len(rep["rss_samples_mb"]) >= 10 and rep["rss_growth_after_warmup_mb"] <= 8, rep  # measured: +0.0 to +0.1 MB after warm-up in 15 s
