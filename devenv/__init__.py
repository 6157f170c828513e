"""Local development environment: the embedded Postgres cluster and the `make up` / `make down` steps."""
