"""Text in: tokenization, prompts, chat templates, chunked processing of over-long inputs."""
