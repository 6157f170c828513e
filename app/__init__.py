"""textbook-ops query service: chat with sources over the textbook."""
