"""The dense cell detector: CenterNet-style heads on the MobileNetV2 backbone (data, model, train, export)."""
