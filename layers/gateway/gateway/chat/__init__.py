"""Chat completions: validation, orchestration and the stream the client sees."""
