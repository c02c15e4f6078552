"""The evaluation harness: protocols, feature backbones, metrics and records.

* :mod:`.protocol_spec`  the Protocol and FewShotSetting dataclasses (every setting that decides a number)
* :mod:`.protocol_defs`  the named protocols, each with what it reproduces of its peer's code and what not
* :mod:`.protocols`      the registry of named protocols and ``get_protocol(id)``
* :mod:`.preflight`      ``check_protocol_fits``, the dry-run plan summary and the protocols table
* :mod:`.harness`        ``evaluate(model, datamodule, ...) -> list[MetricRecord]`` as a list of stages
* :mod:`.generation`     the generation stage (a generator, or the held-out images of the ``real`` row)
* :mod:`.realsets`       the real-image stage (cached features of real sets and conditional pools)
* :mod:`.pixels`         quantisation, the evaluation resolution, pytorch-fid's and cv2's resizes
* :mod:`.metrics`        the metric registry and one module per metric family
* :mod:`.backbone`       the ``domain`` backbone, trained on the seen classes and cached
* :mod:`.features`       the FID Inception extractor and the real-feature cache files
* :mod:`.fid`            FID (torchmetrics) and KID (torch-fidelity) from precomputed features
* :mod:`.diversity`      batched all-pairs LPIPS and the domain-feature distances
* :mod:`.fewshot`        few-shot and low-data classification with generated images
* :mod:`.weights`        finding pretrained weight files offline (option, environment variable, hub cache)
* :mod:`.distributed`    sharding and gathering under DDP
* :mod:`.records`        MetricRecord, one JSON line per number
"""
