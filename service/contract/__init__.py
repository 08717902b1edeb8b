"""The HTTP contract, written once: request and answer models (models.py, with the field types of
fields.py), the route table (operations.py) and the OpenAPI document built from both (openapi.py)."""
