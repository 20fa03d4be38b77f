"""`tunelab serve`: a small OpenAI-compatible chat server for a local model (a judge, a quick look).

- `api.py`: the request body checked (pydantic), OpenAI-shaped responses and error objects; no torch.
- `engine.py`: the model loaded through `tunelab.modeling`, prompts rendered by the tokenizer's own chat
  template, one generation at a time (requests with the same settings batched up to --max-batch).
- `server.py`: the HTTP server (stdlib ThreadingHTTPServer) and its routes.
- `commands.py`: the command.
"""
