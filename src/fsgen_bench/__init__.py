"""fsgen-bench: a benchmark suite for few-shot image generation.

Train a generator on the seen classes of a dataset, condition it on K images of an unseen class, and
score what it makes with one evaluation harness (FID/KID, LPIPS diversity, few-shot accuracy).
"""

__version__ = "0.1.0"
