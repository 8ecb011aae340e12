"""An OpenAI-compatible HTTP server over the engine's Generator and chat template (`nanogpt-tui serve`).

`protocol` validates requests and shapes responses (plain Python), `worker` runs one generation at
a time on a thread, `app` is the Starlette application and `server` starts it under uvicorn. Only
`app` and `server` import the optional `[serve]` extra.
"""
