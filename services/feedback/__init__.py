"""The feedback service: stores shoppers' impressions, clicks, carts and purchases."""
