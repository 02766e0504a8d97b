"""What the tests share besides fixtures (those stay in tests/conftest.py), a module for each kind of thing:

- servers: ServerThread (an ASGI app under uvicorn on 127.0.0.1, in a thread), LoopbackApp, free_port
- processes: child processes (a whole gateway, something listening on a port) and stopping them
- moto: moto's DynamoDB, in this process or in a process of its own
- fake_upstream: the fake provider (OpenAI chat completions and Anthropic Messages on one server);
  greedy_upstream: the money tests' pessimistic one; each a LoopbackApp
- kit: what end-to-end tests read and wait for (user turns, counters, balances, SSE events)
- schemas: structured-output schemas and their validity check
- stack: the end-to-end stack (Stack), the gateway's environment (applied), its tables and providers' health
- catalogs: the extra catalog of models on the fake OpenAI upstream
- keys: API keys for the end-to-end tests (make_key)
- lambdas: the harness of events/ (loading an event, checking an answer) for tests/lambda's three modules,
  and their fake AWS settings
- admin: gateway-admin in this process, and what it stored in a deployed stack
- builds: the session fixtures of `sam build` (registered by conftest.py)
- aws_calls: which AWS calls each function's code can reach, read from its source
- openapi: OpenAI's schema, to check answers and streams against
- strategies: Hypothesis strategies of JSON values and plausible objects

Tests import them as `from tests.support.NAME import …` (pyproject's pythonpath puts the repository first).
"""
