"""The evaluation harness: protocols, feature backbones, metrics and records."""
