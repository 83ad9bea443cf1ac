"""The HTTP API: thin FastAPI routers over the domain packages."""
