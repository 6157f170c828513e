"""What the flows use from the service's code: backups, costs, PostgreSQL binaries, content gaps."""
