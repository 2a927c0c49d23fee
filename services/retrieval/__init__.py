"""The retrieval service: the catalog, its BM25 and dense indexes, and candidate search."""
