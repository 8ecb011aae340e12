"""Serving benchmark: 1, 2 and 4 concurrent streaming clients of `nanogpt-tui serve` against the in-process Generator.

The model is the default preset's (shakespeare-cpu) shape with random weights (speed does not
depend on what was learned) and a BPE trained on part of the embedded corpus, saved as a normal
checkpoint. The server is a real detached process (the app's ServerManager, the same code as
`nanogpt-tui serve`), queried with the official `openai` client over HTTP, streaming
`/v1/completions`; tokens are the server's own usage counts. The in-process figures come from the
same checkpoint in this process while the server idles; the settings take turns, round after
round, and medians are reported (the host may be shared; the ratios are medians of each round's ratio). Both use
`--threads` torch threads (default 1). The server decodes requests that wait together as one
batch; `requests_per_batch_4` says how many shared a batch on average with 4 clients,
`queue_tokens_per_s_4` is a second server with `--max-batch 1` (one request at a time) and
`in_process_batch4` what a batch of 4 in one forward pass gives in-process. Last line:
`tokens_per_s_1=… tokens_per_s_2=… tokens_per_s_4=… in_process_tokens_per_s=… first_token_ms=… …`.

    python benchmarks/serve.py            # 192 tokens per request, 2 requests per client, 3 rounds
    python benchmarks/serve.py --quick    # 48 tokens, 1 request per client, 1 round
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
from engine.importer import load_model
from engine.inference.generate import Generator, SamplingParams
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


class InProcess:
    """The same checkpoint's Generator in this process (the server idles while it runs)."""

    def __init__(self, checkpoint: Path) -> None:
        self.generator = Generator.from_checkpoint(load_model(checkpoint), device="cpu")
        self.params = SamplingParams(temperature=TEMPERATURE, top_k=TOP_K)
        self.run(8, 1)  # warm up

    def run(self, tokens: int, requests: int) -> tuple[float, float]:
        """(tokens/s one request after another, mean first-token ms)."""
        generator = self.generator
        produced, firsts = 0, []
        start = time.perf_counter()
        for index in range(requests):
            begun = time.perf_counter()
            first = None
            params = dataclasses.replace(self.params, seed=index, max_new_tokens=tokens)
            for chunk in generator.generate(generator.encode_prompt(PROMPTS[index % 4]), params):
                if chunk.token_id is not None:
                    produced += 1
                    first = first if first is not None else time.perf_counter() - begun
            firsts.append(first or 0.0)
        return produced / (time.perf_counter() - start), 1000 * statistics.mean(firsts)

    def batch(self, tokens: int) -> float:
        """tokens/s of the four prompts decoded together in one batch."""
        generator = self.generator
        params = dataclasses.replace(self.params, max_new_tokens=tokens)
        start = time.perf_counter()
        produced = sum(1 for chunk in generator.generate_batch([generator.encode_prompt(p) for p in PROMPTS], params)
                       if chunk.token_id is not None)
        return produced / (time.perf_counter() - start)


def client_run(url: str, clients: int, tokens: int, requests: int, model: str = "bench") -> tuple[float, float]:
    """(total tokens/s over all clients, mean first-token ms) with `clients` streaming at once."""
    from openai import OpenAI

    produced, firsts, lock = [0], [], threading.Lock()

    # made before the clock starts (as the in-process Generator is): serving is timed, not client set-up
    clients_made = [OpenAI(base_url=url, api_key="unused", max_retries=0, timeout=600) for _ in range(clients)]

    def one_client(client_index: int) -> None:
        client = clients_made[client_index]
        for request in range(requests):
            begun = time.perf_counter()
            first = None
            stream = client.completions.create(
                model=model, prompt=PROMPTS[(client_index + request) % 4], max_tokens=tokens, stream=True,
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


def health(url: str) -> dict:
    import httpx

    return httpx.get(url.removesuffix("/v1") + "/health", timeout=30).json()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="48 tokens, one request per client, one round")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads for the in-process generator and the server alike (default 1: a tiny "
                        "model decodes one token at a time, and OpenMP's spinning threads slow down badly on a "
                        "shared host)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # inherited by the server process
    tokens, requests, rounds = (48, 1, 1) if args.quick else (192, 2, 3)
    figures: dict[str, list[float]] = {key: [] for key in ("local", "local_first", "batch", "1", "first", "2", "4",
                                                          "rows_1", "rows_2", "rows_4", "queue_4")}
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = write_checkpoint(Path(tmp))
        manager = ServerManager(Path(tmp) / "servers")
        server = manager.wait_ready(manager.start(checkpoint, device="cpu", model_name="bench").name)
        # the same server answering one request at a time (--max-batch 1): queueing against batching
        queue = manager.wait_ready(manager.start(checkpoint, device="cpu", model_name="queue", max_batch=1).name)
        try:
            local = InProcess(checkpoint)
            client_run(server.url, 1, 8, 1)  # warm up the servers' first forward passes
            client_run(queue.url, 1, 8, 1, "queue")
            # the host is shared: every round measures each setting once, and medians are reported
            for round_index in range(rounds):
                rate, first = local.run(tokens, 4 * requests)
                figures["local"].append(rate)
                figures["local_first"].append(first)
                figures["batch"].append(local.batch(tokens))
                for clients in (1, 2, 4):
                    before = health(server.url)
                    rate, first = client_run(server.url, clients, tokens, requests)
                    figures[str(clients)].append(rate)
                    after = health(server.url)
                    figures[f"rows_{clients}"].append((after["completed"] - before["completed"])
                                                      / max(1, after["batches"] - before["batches"]))
                    if clients == 1:
                        figures["first"].append(first)
                figures["queue_4"].append(client_run(queue.url, 4, tokens, requests, "queue")[0])
                print(f"round {round_index + 1}: in-process {figures['local'][-1]:.0f} tokens/s, batch of 4 "
                      f"{figures['batch'][-1]:.0f}; server with 1/2/4 clients {figures['1'][-1]:.0f} / "
                      f"{figures['2'][-1]:.0f} / {figures['4'][-1]:.0f} tokens/s in total, "
                      f"{figures['rows_2'][-1]:.1f} / {figures['rows_4'][-1]:.1f} requests per batch with 2/4; "
                      f"4 clients one request at a time {figures['queue_4'][-1]:.0f}")
        finally:
            manager.stop(server.name)
            manager.stop(queue.name)
    median = {key: statistics.median(values) for key, values in figures.items()}
    local_rate = median["local"]

    def ratio(key: str) -> float:
        """Median over rounds of the server's rate against the in-process rate of the same round."""
        return statistics.median(server / local for server, local in zip(figures[key], figures["local"]))

    print(f"first token: {median['first']:.1f} ms through the server, {median['local_first']:.1f} ms in-process")
    print(f"tokens_per_s_1={median['1']:.0f} tokens_per_s_2={median['2']:.0f} tokens_per_s_4={median['4']:.0f} "
          f"in_process_tokens_per_s={local_rate:.0f} first_token_ms={median['first']:.1f} "
          f"ratio_1={ratio('1'):.2f} ratio_4={ratio('4'):.2f} queue_ratio_4={ratio('queue_4'):.2f} "
          f"in_process_batch4_tokens_per_s={median['batch']:.0f} requests_per_batch_4={median['rows_4']:.1f} "
          f"queue_tokens_per_s_4={median['queue_4']:.0f}")


if __name__ == "__main__":
    main()
