"""`raydo serve`: the HTTP API and dashboard (needs the `raydo[server]` extra)."""
