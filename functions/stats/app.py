"""StatsFunction: the stats app as a buffered Lambda handler."""

from gateway.api import priming
from gateway.api.app import stats_app
from gateway.api.lambda_handler import mangum_handler

handler = mangum_handler(stats_app(), "stats", patch_modules=("botocore",), prime=priming.stats)
