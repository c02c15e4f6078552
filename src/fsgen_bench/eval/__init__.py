"""The evaluation harness: protocols, feature backbones, metrics and records.

* :mod:`.protocols`   named, versioned protocols (``clean``, ``lofgan``, ``f2gan``) and their ids
* :mod:`.harness`     ``evaluate(model, datamodule, ...) -> list[MetricRecord]`` and ``format_table``
* :mod:`.backbone`    the ``domain`` backbone, trained on the seen classes and cached
* :mod:`.features`    the FID Inception extractor and the real-feature cache
* :mod:`.fid`         FID (torchmetrics) and KID (torch-fidelity) from precomputed features
* :mod:`.diversity`   batched all-pairs LPIPS and the domain-feature diversity
* :mod:`.fewshot`     few-shot and low-data classification with generated images
* :mod:`.weights`     finding pretrained weight files offline (option, environment variable, hub cache)
* :mod:`.distributed` sharding and gathering under DDP
* :mod:`.records`     MetricRecord, one JSON line per number
"""
