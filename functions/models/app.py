"""ModelsFunction: the models app as a buffered Lambda handler."""

from gateway.api import priming
from gateway.api.app import models_app
from gateway.api.lambda_handler import mangum_handler

handler = mangum_handler(models_app(), "models", prime=priming.models)
