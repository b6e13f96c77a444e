"""Embedded stand-ins for servers, so that a fresh machine needs none: PostgreSQL and S3."""
