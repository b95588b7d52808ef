"""PyTorch / HF checkpoint -> Orbax converters, one module per source (`python -m converters.NAME`)."""
