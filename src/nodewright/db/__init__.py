"""Database access: engine set-up, typed models, sessions, migrations."""
