"""Where runs execute: warm run workers for an instance on one machine (see launcher.py)."""
