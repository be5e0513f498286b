"""The REST API: a thin HTTP layer over scheduling.services."""
