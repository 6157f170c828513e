"""The thin service layer between the routers and the RAG core / database."""
