"The data CLI as a user runs it, and property-based checks of formatting, masking and loading."
import json
import pytest
from hypothesis import given, settings, strategies as st, HealthCheck
from conftest import run_cli
from llmft.data import (Example, format_example, tokenize_example, load_examples, DataError, Problem, sample_dataset_dir)

DEFECTS = [
    '{"id": "a1", "instruction": "Add 1 and 2.", "output": "3"}',
    '{"id": "a2", "instruction": "Reverse abc."}',
    '{"id": "a3", "instruction": "Upper x.", "output": "X"',
    '{"id": "a1", "instruction": "Add 2 and 2.", "output": "4"}',
    '{"id": "a5", "instruction": "  ", "output": "x"}',
    '{"id": "a6", "instruction": "Upper b.", "output": "B"}',
]

def test_cli_validate_reports_every_defect_and_exits_nonzero(tmp_path):
    f = tmp_path/"train.jsonl"; f.write_text("\n".join(DEFECTS) + "\n")
    r = run_cli("data", "validate", f)
    assert r.returncode == 1
    assert r.stdout.splitlines() == [
        "train.jsonl:2 (id=a2): field 'output' is missing",
        "train.jsonl:3: malformed JSON: Expecting ',' delimiter at column 54",
        "train.jsonl:4 (id=a1): field 'id' is a duplicate: 'a1' is first used at train.jsonl:1",
        "train.jsonl:5 (id=a5): field 'instruction' is empty"]

def test_cli_validate_lenient_keeps_exactly_the_good_examples(tmp_path):
    f, out = tmp_path/"train.jsonl", tmp_path/"clean.jsonl"
    f.write_text("\n".join(DEFECTS) + "\n")
    r = run_cli("data", "validate", f, "--lenient", "--out", out)
    assert r.returncode == 0, r.stderr
    assert [json.loads(l)["id"] for l in out.read_text().splitlines()] == ["a1", "a6"]
    assert "2 valid, 4 with problems" in r.stderr

def test_cli_validate_with_tokenizer_flags_responses_cut_off(tmp_path):
    f = tmp_path/"long.jsonl"
    f.write_text(json.dumps({"id": "long", "instruction": "word " * 300, "output": "x"}) + "\n")
    r = run_cli("data", "validate", f, "--model", "tiny", "--max-length", "64")
    assert r.returncode == 1 and "long.jsonl:1 (id=long): response entirely cut off by max_length=64" in r.stdout

def test_cli_validate_shipped_sample_is_clean_and_preview_shows_masking():
    r = run_cli("data", "validate", sample_dataset_dir()/"train.jsonl")
    assert r.returncode == 0 and "3000 valid, 0 with problems" in r.stderr
    r = run_cli("data", "preview", sample_dataset_dir()/"test.jsonl", "-n", "1")  # tiny's tokenizer has a chat template: the default
    assert r.returncode == 0 and "prompt tokens (masked)" in r.stdout and "<|assistant|>" in r.stdout and "### Response:" not in r.stdout
    r = run_cli("data", "preview", sample_dataset_dir()/"test.jsonl", "-n", "1", "--template", "plain")
    assert r.returncode == 0 and "### Response:" in r.stdout
    stats = json.loads(run_cli("data", "stats", sample_dataset_dir()/"test.jsonl").stdout)
    assert stats["examples"] == 200 and stats["over_max_length"] == 0

def test_cli_data_missing_file_is_clear(tmp_path):
    r = run_cli("data", "validate", tmp_path/"nope.jsonl")
    assert r.returncode == 2 and "no such file" in r.stderr and "Traceback" not in r.stderr

text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=80).filter(lambda s: s.strip())

@pytest.fixture(scope="module")
def tok(tiny_base):
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(tiny_base)

@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(instruction=text, inp=st.one_of(st.just(""), text), output=text, template=st.sampled_from(["plain", "alpaca", "chat"]))
def test_formatting_keeps_both_sections(tok, instruction, inp, output, template):
    prompt, response = format_example(Example("h", None, instruction, inp, output), template, tok)
    assert instruction in prompt and response == output
    if inp: assert inp in prompt

@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(instruction=text, output=text, max_length=st.integers(2, 80))
def test_masking_never_leaves_zero_supervised_tokens_silently(tok, instruction, output, max_length):
    prompt, response = format_example(Example("h", None, instruction, "", output))
    f = tokenize_example(prompt, response, tok, max_length)
    if isinstance(f, Problem): assert "entirely cut off" in f.message
    else:
        assert f.n_supervised > 0 and len(f.input_ids) <= max_length
        if not f.truncated: assert f.labels[-1] == tok.eos_token_id

record = st.dictionaries(st.sampled_from(["id", "instruction", "input", "output", "extra", "messages"]),
                         st.one_of(st.none(), st.integers(), text, st.lists(st.integers(), max_size=3)), max_size=6)

@settings(max_examples=80, deadline=None)
@given(records=st.lists(st.one_of(record, st.integers(), st.text(max_size=20)), min_size=1, max_size=12))
def test_loader_never_crashes_nor_drops_silently(tmp_path_factory, records):
    f = tmp_path_factory.mktemp("fuzz")/"d.jsonl"
    f.write_text("\n".join(json.dumps(r) if not isinstance(r, str) else r for r in records) + "\n")
    try: rep = load_examples(f, schema="alpaca", strict=False)
    except DataError as e:  # only a file with no examples at all is refused outright
        assert "contains no examples" in str(e); return
    with open(f, encoding="utf-8") as fh: lines = [i for i, l in enumerate(fh, 1) if l.strip()]
    kept, dropped = {e.ref for e in rep.examples}, set(rep.dropped)
    assert kept | dropped == {f"d.jsonl:{i}" for i in lines} and not kept & dropped

# What a new user brings: a hub id offline, the shipped sample by name, an Excel CSV, a ShareGPT file, an OpenAI file with weights.

def one_line_error(r, rc=2):
    assert r.returncode == rc and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, (r.returncode, r.stderr[-3000:])
    return r.stderr.strip()

def test_cli_hub_id_offline_is_one_clear_line():
    err = one_line_error(run_cli("data", "validate", "tatsu-lab/alpaca"))
    assert err.startswith("llmft data: error: tatsu-lab/alpaca: no such file or folder here, and not loadable as a Hugging Face hub dataset: offline mode is on")
    assert "give a local .json/.jsonl/.csv/.parquet file" in err

def test_cli_train_on_a_missing_folder_is_one_clear_line(tmp_path):
    err = one_line_error(run_cli("train", f"output_dir={tmp_path}", "tracking.enabled=false", "data.train=some/missing_folder"))
    assert "some/missing_folder: no such file or folder here" in err
    err = one_line_error(run_cli("train", f"output_dir={tmp_path}", "tracking.enabled=false", f"data.train={tmp_path/'nope'/'deeper'/'x'}"))
    assert err.endswith("x: no such file or folder")

def test_cli_sample_is_the_shipped_dataset():
    r = run_cli("data", "validate", "sample")
    assert r.returncode == 0 and "sample: 3000 records, schema alpaca, 3000 valid, 0 with problems" in r.stderr, r.stderr
    r = run_cli("data", "validate", "sample", "--split", "test")
    assert r.returncode == 0 and "200 valid" in r.stderr, r.stderr

def test_cli_excel_csv_with_byte_order_mark(tmp_path):
    f = tmp_path/"excel.csv"
    f.write_bytes("\ufeffinstruction,input,output\r\nAdd 1 and 2.,,3\r\n\"Say \"\"hi\"\"\",,hi\r\n".encode("utf-8"))
    r = run_cli("data", "validate", f, "--out", tmp_path/"clean.jsonl")
    assert r.returncode == 0 and "2 records, schema alpaca, 2 valid" in r.stderr, r.stderr
    assert [json.loads(l)["instruction"] for l in (tmp_path/"clean.jsonl").read_text().splitlines()] == ["Add 1 and 2.", 'Say "hi"']

SHAREGPT = [{"id": "s1", "conversations": [{"from": "system", "value": "Be brief."}, {"from": "human", "value": "Add 1 and 2."}, {"from": "gpt", "value": "3"}]},
            {"id": "s2", "conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}, {"from": "human", "value": "Reverse abc."}, {"from": "gpt", "value": "cba"}]},
            {"id": "s3", "conversations": [{"from": "human", "value": "Hi"}, {"from": "robot", "value": "x"}]}]

def test_cli_sharegpt_file_is_detected_and_named_by_its_fields(tmp_path):
    f = tmp_path/"sg.json"; f.write_text(json.dumps(SHAREGPT))
    for extra in ((), ("--schema", "sharegpt")):
        r = run_cli("data", "validate", f, *extra)
        assert r.returncode == 1, r.stderr
        assert r.stdout.splitlines() == ["sg.json[2] (id=s3): field 'conversations[1].from' must be one of system, human, user, gpt, assistant, got 'robot'"]
        assert "schema sharegpt, 2 valid, 1 with problems" in r.stderr
    r = run_cli("data", "preview", f, "--template", "chat", "-n", "2")
    assert r.returncode == 0, r.stderr
    assert "[trained]\nHello</s>" in r.stdout and "[trained]\ncba</s>" in r.stdout and "<|system|>\nBe brief." in r.stdout

OPENAI = [{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello", "weight": 0},
                        {"role": "user", "content": "Add 1 and 2."}, {"role": "assistant", "content": "3", "name": "calc"}]},
          {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}, {"role": "user", "content": "Reverse abc."}, {"role": "assistant", "content": "cba"}]}]

def test_cli_openai_file_trains_every_weighted_assistant_turn_and_names_unused_fields(tmp_path):
    f = tmp_path/"oa.jsonl"; f.write_text("\n".join(json.dumps(r) for r in OPENAI) + "\n")
    r = run_cli("data", "validate", f)
    assert r.returncode == 0 and "schema chat, 2 valid" in r.stderr, r.stderr
    assert "oa.jsonl: field 'messages[].name' is not used (in 1 example, first at oa.jsonl:1)" in r.stderr
    r = run_cli("data", "preview", f, "--template", "chat", "-n", "2")
    first, second = r.stdout.split("--- oa.jsonl:2")
    assert "[trained]\n3</s>" in first and "[trained]\nHello" not in first  # weight 0: shown, not trained
    assert "[trained]\nHello</s>" in second and "[trained]\ncba</s>" in second  # no weights: every assistant turn

def test_chat_template_asked_of_a_model_without_one_is_one_line_before_training(tmp_path, tiny_base):
    import shutil
    plain = tmp_path/"no-chat"
    shutil.copytree(tiny_base, plain)
    (plain/"chat_template.jinja").unlink()  # a base model without a chat template
    r = run_cli("train", f"model={plain}", "data.template=chat", f"output_dir={tmp_path/'out'}", "tracking.enabled=false", "max_steps=1")
    assert r.returncode == 2 and f"template='chat' but the tokenizer of {plain} has no chat template" in r.stderr, r.stderr[-2000:]
    assert not (tmp_path/"out"/"checkpoints").exists()
    r = run_cli("data", "preview", "sample", "--model", plain, "-n", "1")  # no template named: plain, since it has none
    assert r.returncode == 0 and "### Instruction:" in r.stdout, r.stdout + r.stderr

def test_cli_data_knows_preference_files(tmp_path):
    "Paired (prompt/chosen/rejected, text or messages) and KTO files: every defect at its line, the valid records written back, stats by kind."
    u = [{"role": "user", "content": "Add 2 and 3."}]
    rows = [dict(id="1", prompt="Add 2 and 3.", chosen="5", rejected="6"), dict(id="2", prompt="Add 1 and 1.", chosen="2"),
            dict(id="3", prompt="p", chosen="x", rejected="x"), dict(id="4", chosen=u + [{"role": "assistant", "content": "5"}], rejected=[{"role": "user", "content": "Add 9 and 9."}, {"role": "assistant", "content": "6"}])]
    f = tmp_path/"prefs.jsonl"; f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    r = run_cli("data", "validate", f, "--lenient", "--out", tmp_path/"kept.jsonl")
    assert r.returncode == 0 and r.stdout.splitlines() == [
        "prefs.jsonl:2 (id=2): field 'rejected' is missing", "prefs.jsonl:3 (id=3): field 'chosen' is the same as rejected: the pair prefers nothing",
        "prefs.jsonl:4 (id=4): field 'chosen[0]' prompt mismatch: chosen and rejected differ at message 0 (user turn), before the answers; without a prompt field, both must share every turn up to the answer"], r.stdout
    assert [json.loads(x)["id"] for x in (tmp_path/"kept.jsonl").read_text().splitlines()] == ["1"]
    assert run_cli("data", "validate", f).returncode == 1
    k = tmp_path/"kto.csv"; k.write_text("prompt,completion,label\nAdd 2 and 3.,5,true\nAdd 2 and 3.,6,false\n")
    s = json.loads(run_cli("data", "stats", k).stdout)
    assert (s["kind"], s["examples"], s["labels"]) == ("unpaired", 2, dict(desirable=1, undesirable=1))
    assert json.loads(run_cli("data", "stats", "sample-preference").stdout)["examples"] == 1000
