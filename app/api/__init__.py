"""Management routes of /api/v1: thin views over the services."""
