"""StatsFunction: the stats app under Mangum (lifespan off: Mangum would run it on every invocation)."""

from gateway.api.app import stats_app
from mangum import Mangum

handler = Mangum(stats_app(), lifespan="off")
