"""ChatFunction: the chat app, served by uvicorn behind the Lambda Web Adapter (run.sh) so it can stream."""

import gc

from gateway import telemetry
from gateway.api import priming, snapstart
from gateway.api.app import chat_app

app = chat_app()
# uvicorn starts once per execution environment: this is its cold start. Under SnapStart, init runs
# once per version, so each restored copy counts its own (the adapter's after-restore hook).
if snapstart.snapshotting():
    priming.chat(app)  # now, once per version, what the first request would do
    snapstart.on_restore(lambda: telemetry.cold_start("chat"))
else:
    telemetry.cold_start("chat")
gc.collect()  # what priming left behind, before the rest is frozen
gc.freeze()  # what import built lives as long as the process: keep it out of every later collection
