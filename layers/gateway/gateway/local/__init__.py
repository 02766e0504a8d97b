"""The local server: every route in one process, DynamoDB emulated by moto's server."""
