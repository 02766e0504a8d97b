"""Request handling: the FastAPI routes, and the app each Lambda function serves."""
