"""HTTP API: routers under /api, problem responses, auth dependencies."""
