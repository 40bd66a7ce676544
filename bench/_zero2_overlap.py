"""`llmft train` with DeepSpeed's `overlap_comm` forced on (llmft turns it on only on GPUs): for bench/train_scaling.py's --zero2-overlap row."""
import sys
from llmft import distributed
from llmft.cli import main

made = distributed.deepspeed_config
distributed.deepspeed_config = lambda stage, overlap=None: made(stage, overlap=True)
sys.exit(main(sys.argv[1:]))
