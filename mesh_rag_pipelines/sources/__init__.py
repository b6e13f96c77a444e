"""Readers that turn a product's source into document changes, one module per source kind."""
