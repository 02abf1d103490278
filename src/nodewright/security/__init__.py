"""Security: secrets at rest, redaction, passwords, API tokens, sessions, CSRF, roles, audit."""
