"""Recommendations from what shoppers did: co-occurrence, trending, the shopper's own
history and the catalog's text vectors, blended per placement (``recommender``).

Items are represented by their text (the content source), so a product added today can
be recommended today. Shopper state is derived from feedback events; aggregates
(co-occurrence, trending) hold no shopper ids.
"""
