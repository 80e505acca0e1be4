"""`gateway.yaml`: the typed model, its loader with every error at once, and its JSON Schema."""
