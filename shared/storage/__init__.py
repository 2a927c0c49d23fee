"""Relational storage shared by the services: one engine factory, one module per set of tables."""
