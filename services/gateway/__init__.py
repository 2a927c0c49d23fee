"""The gateway: the public SearchService that storefront backends call."""
