"""Server-rendered dashboard: login, and pages for each domain. No JavaScript build step."""
