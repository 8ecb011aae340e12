"""Training and serving engine for modded-nanogpt style GPT models (no UI imports)."""
