"""Using a trained model: `generate.py` (Generator: KV cache, streaming), `sampling.py` (temperature, top-k,
top-p, repetition penalty), `text_stream.py` (token ids to text), `chat.py` (ChatSession: turns through the
chat template), `evaluate.py` (loss and bits per byte on held-out text, samples).

The HTTP server built on these is `engine.serve`; loading a checkpoint is `engine.importer`.
"""
