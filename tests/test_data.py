"The data CLI as a user runs it, and property-based checks of formatting, masking and loading."
import json, string
from pathlib import Path
import pytest
from hypothesis import given, settings, strategies as st, HealthCheck
from conftest import run_cli
from llmft.data import (Example, format_example, tokenize_example, load_examples, DataError, Problem, IGNORE_INDEX,
                        TEMPLATES, sample_dataset_dir)

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
    r = run_cli("data", "preview", sample_dataset_dir()/"test.jsonl", "-n", "1")
    assert r.returncode == 0 and "prompt tokens (masked)" in r.stdout and "### Response:" in r.stdout
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
