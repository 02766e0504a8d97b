"""ChatFunction: the chat app, served by uvicorn behind the Lambda Web Adapter (run.sh) so it can stream."""

from gateway.api.app import chat_app

app = chat_app()
