"""ChatFunction: the chat app, served by uvicorn behind the Lambda Web Adapter (run.sh) so it can stream."""

from gateway import telemetry
from gateway.api.app import chat_app

app = chat_app()
telemetry.cold_start("chat")  # uvicorn starts once per execution environment: this is its cold start
