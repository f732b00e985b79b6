"""Config: the structured schema (the single source of defaults), loading and checks.

Imported by every layer above; imports only the shared utilities (errors).
"""
