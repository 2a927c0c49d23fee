"""The recommendation service: placements answered from co-occurrence, content neighbours,
trending and the shopper's history, learned from the feedback store."""
