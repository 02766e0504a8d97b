"""ModelsFunction: the models app under Mangum (lifespan off: Mangum would run it on every invocation)."""

from gateway.api.app import models_app
from mangum import Mangum

handler = Mangum(models_app(), lifespan="off")
