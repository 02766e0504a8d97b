"""Serverless, OpenAI-compatible LLM API gateway: the package every Lambda and the local server share."""
