"""ChatFunction: the chat app, served by uvicorn behind the Lambda Web Adapter (run.sh) so it can stream."""

import gc

from gateway import telemetry
from gateway.api import priming, snapstart
from gateway.api.app import chat_app

app = chat_app()
if snapstart.snapshotting():  # SnapStart: do now, once per version, what the first request would do
    priming.chat(app)
telemetry.cold_start("chat")  # uvicorn starts once per execution environment: this is its cold start
gc.freeze()  # what import built lives as long as the process: keep it out of every later collection
