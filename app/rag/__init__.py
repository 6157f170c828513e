"""Retrieval-augmented answering: chunking, embeddings, the vector index, retrieval and answers."""
