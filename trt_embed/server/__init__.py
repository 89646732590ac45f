"""Starlette server (OpenAI, Cohere, pooling, score APIs) over the runtime."""
