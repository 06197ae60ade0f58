"""The HTTP edge: a Starlette app with Mailsac-compatible routes under ``/api``."""
