"""The zero-shot LLM retrievers PromptReps and DiffRetriever (no training): dense, sparse and hybrid scoring."""
