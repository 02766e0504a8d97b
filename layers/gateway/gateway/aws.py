"""boto3 sessions that share one process-wide loader of AWS service models.

A client's credentials and connection pool belong to one execution environment, so after a
SnapStart restore (or `reset_caches()`) every client is made again. What need not be redone is
parsing the service's model files: a new botocore session parses them again (~140 ms here for
DynamoDB), a session given this loader finds them parsed (~30 ms for the whole client).
"""

from __future__ import annotations

import boto3
import botocore.loaders
import botocore.session

_LOADER = botocore.loaders.create_loader()  # parsed JSON only: no credentials, no connections


def session() -> boto3.session.Session:
    """A new session (its own credential resolution) over the shared, already parsed service models."""
    core = botocore.session.Session()
    core.register_component("data_loader", _LOADER)
    return boto3.session.Session(botocore_session=core)
