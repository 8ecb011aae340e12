"""Data: tokenizers, text corpora and modded-nanogpt `.bin` token shards."""
