"""The ranking service: orders retrieval candidates and explains each score."""
