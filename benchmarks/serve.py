"""Serving benchmark: 1, 2 and 4 concurrent streaming clients of `nanogpt-tui serve` against the in-process Generator.

The model is the default preset's (shakespeare-cpu) shape with random weights (speed does not
depend on what was learned) and a BPE trained on part of the embedded corpus, saved as a normal
checkpoint. The server is a real detached process (the app's ServerManager, the same code as
`nanogpt-tui serve`), queried with the official `openai` client over HTTP, streaming
`/v1/completions`; tokens are the server's own usage counts. The in-process figures come from the
same checkpoint in this process, measured first (the server is not running then). Both use
`--threads` torch threads (default 1). The server answers one request at a time, so with several clients the total should stay near the 1-client
rate; `in_process_batch4` shows what a batch of 4 in one forward pass would give. Last line:
`tokens_per_s_1=… tokens_per_s_2=… tokens_per_s_4=… in_process_tokens_per_s=… first_token_ms=… …`.

    python benchmarks/serve.py            # 192 tokens per request, 2 requests per client
    python benchmarks/serve.py --quick    # 48 tokens, 1 request per client
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.checkpoint import save_checkpoint
from engine.config import DEFAULT_PRESET, config_hash, preset, to_dict
from engine.data.corpus import load_corpus
from engine.data.tokenizer import train_bpe
from engine.generate import Generator, SamplingParams
from engine.importer import load_model
from engine.model import GPT
from engine.serve.processes import ServerManager

PROMPTS = ["ROMEO:\nBut soft, what light", "JULIET:\nO Romeo, Romeo", "HAMLET:\nTo be, or not", "KING LEAR:\nBlow, winds"]
TEMPERATURE, TOP_K = 0.8, 50


def write_checkpoint(folder: Path) -> Path:
    """The default preset's model (random weights) with a BPE from the first 1 MB of the corpus."""
    text = "".join(load_corpus("shakespeare"))[:1_000_000]
    hp = preset(DEFAULT_PRESET)
    tokenizer = train_bpe([text], hp.data.bpe_vocab_size)
    hp = dataclasses.replace(hp, model=dataclasses.replace(hp.model, vocab_size=tokenizer.vocab_size,
                                                           bos_id=tokenizer.bos_id))
    torch.manual_seed(0)
    model = GPT(hp.model)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("c_proj.weight"):
                param.normal_(std=0.02)
        model.lm_head.weight.normal_(std=1.0)
    payload = {"model": model.state_dict(), "optimizers": [], "config": to_dict(hp),
               "tokenizer": tokenizer.to_payload(), "data_position": None, "tokens_seen": 0}
    meta = {"config_hash": config_hash(hp), "tokenizer": "bpe", "run": "bench", "kind": "pretrain",
            "num_params": model.num_params(), "model": to_dict(hp)["model"]}
    return save_checkpoint(folder / "runs" / "bench" / "checkpoints", 1, payload, meta)


def in_process(checkpoint: Path, tokens: int, requests: int) -> tuple[float, float, float]:
    """(tokens/s one request after another, mean first-token ms, tokens/s for a batch of 4 prompts)."""
    generator = Generator.from_checkpoint(load_model(checkpoint), device="cpu")
    params = SamplingParams(temperature=TEMPERATURE, top_k=TOP_K, max_new_tokens=tokens)
    list(generator.generate(generator.encode_prompt(PROMPTS[0]), dataclasses.replace(params, max_new_tokens=8)))
    produced, firsts = 0, []
    start = time.perf_counter()
    for index in range(requests):
        begun = time.perf_counter()
        first = None
        for chunk in generator.generate(generator.encode_prompt(PROMPTS[index % 4]),
                                        dataclasses.replace(params, seed=index)):
            if chunk.token_id is not None:
                produced += 1
                first = first if first is not None else time.perf_counter() - begun
        firsts.append(first or 0.0)
    rate = produced / (time.perf_counter() - start)
    start = time.perf_counter()
    batch = sum(1 for chunk in generator.generate_batch([generator.encode_prompt(p) for p in PROMPTS], params)
                if chunk.token_id is not None)
    return rate, 1000 * statistics.mean(firsts), batch / (time.perf_counter() - start)


def client_run(url: str, clients: int, tokens: int, requests: int) -> tuple[float, float]:
    """(total tokens/s over all clients, mean first-token ms) with `clients` streaming at once."""
    from openai import OpenAI

    produced, firsts, lock = [0], [], threading.Lock()

    def one_client(client_index: int) -> None:
        client = OpenAI(base_url=url, api_key="unused", max_retries=0, timeout=600)
        for request in range(requests):
            begun = time.perf_counter()
            first = None
            stream = client.completions.create(
                model="bench", prompt=PROMPTS[(client_index + request) % 4], max_tokens=tokens, stream=True,
                temperature=TEMPERATURE, seed=client_index * 100 + request, stream_options={"include_usage": True},
                extra_body={"top_k": TOP_K})
            for chunk in stream:
                if chunk.choices and chunk.choices[0].text and first is None:
                    first = time.perf_counter() - begun
                if chunk.usage is not None:
                    with lock:
                        produced[0] += chunk.usage.completion_tokens
            with lock:
                firsts.append(first or 0.0)

    threads = [threading.Thread(target=one_client, args=(index,)) for index in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return produced[0] / (time.perf_counter() - start), 1000 * statistics.mean(firsts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="48 tokens, one request per client")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads for the in-process generator and the server alike (default 1: a tiny "
                        "model decodes one token at a time, and OpenMP's spinning threads slow down badly on a "
                        "shared host)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # inherited by the server process
    tokens, requests = (48, 1) if args.quick else (192, 2)
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = write_checkpoint(Path(tmp))
        local_rate, local_first_ms, batch_rate = in_process(checkpoint, tokens, 4 * requests)
        print(f"in-process: {local_rate:.0f} tokens/s one request at a time, first token {local_first_ms:.1f} ms; "
              f"a batch of 4: {batch_rate:.0f} tokens/s")
        manager = ServerManager(Path(tmp) / "servers")
        server = manager.wait_ready(manager.start(checkpoint, device="cpu", model_name="bench").name)
        try:
            client_run(server.url, 1, 8, 1)  # warm up the server's first forward passes
            rates, first_ms = {}, 0.0
            for clients in (1, 2, 4):
                rates[clients], first = client_run(server.url, clients, tokens, requests)
                first_ms = first if clients == 1 else first_ms
                print(f"{clients} client(s): {rates[clients]:.0f} tokens/s in total "
                      f"({rates[clients] / local_rate:.2f}x in-process), mean first token {first:.1f} ms")
        finally:
            manager.stop(server.name)
    print(f"tokens_per_s_1={rates[1]:.0f} tokens_per_s_2={rates[2]:.0f} tokens_per_s_4={rates[4]:.0f} "
          f"in_process_tokens_per_s={local_rate:.0f} first_token_ms={first_ms:.1f} "
          f"ratio_1={rates[1] / local_rate:.2f} ratio_4={rates[4] / local_rate:.2f} "
          f"in_process_batch4_tokens_per_s={batch_rate:.0f}")


if __name__ == "__main__":
    main()
