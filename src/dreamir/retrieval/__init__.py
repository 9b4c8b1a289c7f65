"""Retrieval: model specs and encoders (dense, BM25, zero-shot LLM retrievers), the embedding cache, exact and
faiss search, sharded indexes. Below evaluation (`dreamir.evaluation` scores what this layer retrieves)."""
