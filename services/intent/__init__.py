"""The intent service: which product classes a query asks for."""
