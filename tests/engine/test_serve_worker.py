"""The server's worker: requests waiting together are decoded as one batch, each getting its reply alone."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
import torch

from engine.data.tokenizer import train_bpe
from engine.inference.generate import Generator, Row, SamplingParams
from engine.serve import worker as worker_module
from engine.serve.protocol import CompletionRequest
from engine.serve.service import CompletionReply, Delta, Done, ServedModel
from engine.serve.worker import END, JobFailed
from tests.engine.test_generate import TEXT, tiny_model


class HeldReply(CompletionReply):
    """A completion whose preparation waits until `release` is set (so the others queue up behind it)."""

    def __init__(self, served: ServedModel, request: CompletionRequest, release: threading.Event) -> None:
        super().__init__(served, request)
        self.release = release

    def prepare(self, cancel: threading.Event) -> Row:
        assert self.release.wait(10)
        return super().prepare(cancel)


async def reply(job) -> tuple[str, Done]:  # noqa: ANN001 - a worker Job
    pieces, done = [], None
    while (event := await job.next_event()) is not END:
        assert not isinstance(event, JobFailed), event.error
        if isinstance(event, Delta):
            pieces.append(event.text)
        elif isinstance(event, Done):
            done = event
    assert done is not None
    return "".join(pieces), done


def tiny_served(max_batch: int = 8) -> ServedModel:
    torch.set_num_threads(1)
    tokenizer = train_bpe([TEXT], 300)
    return ServedModel(Generator(tiny_model(tokenizer.vocab_size), tokenizer, max_context=64), "tiny",
                       max_batch=max_batch)


@pytest.mark.parametrize("max_batch", [8, 1])
def test_waiting_requests_run_as_one_batch_with_their_own_settings(max_batch: int) -> None:
    """Three requests waiting together: one batch of 3, or (--max-batch 1) three in arrival order; same replies."""
    served = tiny_served(max_batch)
    generator = served.generator
    requests = [CompletionRequest("tiny", prompt, SamplingParams(temperature=temperature, seed=seed, max_new_tokens=n,
                                                                 top_k=top_k), False, False, echo)
                for prompt, temperature, seed, n, top_k, echo in [("hello", 0.8, 1, 30, 50, False),
                                                                   ("the lazy dog", 0.0, 0, 20, 0, True),
                                                                   ("hello", 1.2, 7, 25, 0, False)]]
    release = threading.Event()

    async def run() -> list[tuple[str, Done]]:
        jobs = [served.worker.submit(HeldReply(served, requests[0], release))]
        jobs += [served.worker.submit(served.completion_work(request)) for request in requests[1:]]
        release.set()  # the first is prepared only now: the others are already waiting
        return list(await asyncio.gather(*(reply(job) for job in jobs)))

    try:
        together = asyncio.run(run())
    finally:
        served.worker.close()
    stats = served.worker.stats
    assert (stats.batches, stats.largest_batch) == ((1, 3) if max_batch > 1 else (3, 1))
    assert stats.completed == 3 and stats.queued == 0
    for request, (text, done) in zip(requests, together):
        prompt = generator.encode_prompt(request.prompt)
        chunks = list(generator.generate(prompt, request.params))
        alone = (request.prompt if request.echo else "") + "".join(chunk.text for chunk in chunks)
        assert text == alone, f"{request.prompt!r} in a batch differs from its reply alone"
        assert done.prompt_tokens == len(prompt) and done.reason == chunks[-1].finish_reason


def test_while_requests_overlap_a_batch_waits_briefly_for_the_next(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(worker_module, "GATHER_S", 1.0)  # long, so a loaded host cannot make this flaky
    served = tiny_served()
    served.worker._overlapping_until = time.monotonic() + 60  # as after a batch of several requests
    request = CompletionRequest("tiny", "hello", SamplingParams(seed=1, max_new_tokens=8), False, False, False)

    async def run() -> None:
        first = served.worker.submit(served.completion_work(request))
        await asyncio.sleep(0.05)  # the worker has taken the first; the second arrives while it gathers
        second = served.worker.submit(served.completion_work(request))
        await asyncio.gather(reply(first), reply(second))

    try:
        asyncio.run(run())
    finally:
        served.worker.close()
    assert served.worker.stats.batches == 1 and served.worker.stats.largest_batch == 2
