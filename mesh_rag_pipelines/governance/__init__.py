"""Contracts enforced: access control in the database, PII masking, erasure, data quality."""
