"""Few-shot and low-data classification with generated images: what the images are worth downstream.

The classifiers and episodes are in :mod:`fsgen_bench.eval.fewshot`; this module turns them into the
registered metrics. Accuracy with the real images alone does not depend on the generator (the same episodes
for every method of a seed): it is shown as the baseline of the gain, never ranked.
"""

from __future__ import annotations

import torch

from fsgen_bench.eval.fewshot import fewshot_episodes, lowdata_accuracy, mean_ci95
from fsgen_bench.eval.metrics.inputs import MetricInputs
from fsgen_bench.eval.metrics.registry import MetricFamily, MetricSpec, Value, register
from fsgen_bench.eval.protocol_spec import FewShotSetting

_CLASSIFIER = "LogisticRegression(C={c}, max_iter={it}, solver=lbfgs) on L2-normalised domain features"


def compute_fewshot(inp: MetricInputs) -> list[Value]:
    fs = inp.protocol.fewshot
    out = []
    if not inp.fewshot_gen:
        return out
    cond, held = inp.cond["domain"], inp.heldout["domain"]
    shots = {c: cond[c][torch.from_numpy(inp.plans[c].shot_sets)] for c in inp.class_ids}        # [T, S, D]
    queries = {c: held[c][: fs.queries] for c in inp.class_ids}
    for w, n in zip(fs.ways, fs.ways_for(len(inp.class_ids))):
        res = fewshot_episodes(shots, inp.fewshot_gen, queries, ways=n, episodes=fs.episodes, seed=inp.plan_seed,
                               protocol_seed=inp.protocol.seed, c=fs.classifier_c, max_iter=fs.classifier_max_iter,
                               weight_rule=fs.generated_weight, ctx=inp.ctx)
        extra = {"episodes": fs.episodes, "ways": n, "shots": fs.shots, "queries_per_class": res.queries_per_class,
                 "added_generated_per_class": res.generated_per_class, "shot_sets": fs.shot_sets,
                 "generated_weight": fs.generated_weight,
                 "classifier": _CLASSIFIER.format(c=fs.classifier_c, it=fs.classifier_max_iter),
                 "ci95_of": "the mean over episodes (1.96 x std / sqrt(episodes))"}
        setting = FewShotSetting.label(w, fs.shots)
        for metric, values in (("fewshot_acc_real", res.acc_real), ("fewshot_acc_gen", res.acc_gen),
                               ("fewshot_gain", res.gain)):
            mean, ci = mean_ci95(values)
            out.append(Value(metric, "domain", mean, setting=setting, ci95=ci, extra=extra))
    return out


def compute_lowdata(inp: MetricInputs) -> list[Value]:
    fs = inp.protocol.fewshot
    held = inp.heldout["domain"]
    out = []
    for n in inp.lowdata_ns:
        train = {c: held[c][:n] for c in inp.class_ids}
        test = {c: held[c][n:] for c in inp.class_ids}
        res = lowdata_accuracy(train, {c: inp.lowdata_gen[n][c] for c in inp.class_ids}, test, n_real=n,
                               c=fs.classifier_c, max_iter=fs.classifier_max_iter, weight_rule=fs.generated_weight)
        extra = {"train_images": res.train_images, "test_images": res.test_images,
                 "added_generated_per_class": res.generated_per_class, "k_shot": inp.protocol.k_shot,
                 "classes": len(inp.class_ids), "generated_weight": fs.generated_weight,
                 "ci95_of": "the mean over test images (1.96 x std / sqrt(test images))"}
        for metric, values in (("lowdata_acc_real", res.correct_real), ("lowdata_acc_gen", res.correct_gen),
                               ("lowdata_gain", res.correct_gen - res.correct_real)):
            mean, ci = mean_ci95(values)
            out.append(Value(metric, "domain", mean, setting=f"{n}real", ci95=ci, extra=extra))
    return out


FEWSHOT = register(MetricFamily(
    name="fewshot",
    specs=(
        MetricSpec("fewshot_acc_real", "downstream", "higher", False, "few-shot classification accuracy with the "
                   "real shots only (the baseline of the gain; not ranked)", order=40,
                   needs=frozenset({"fewshot", "conditioning"})),
        MetricSpec("fewshot_acc_gen", "downstream", "higher", True, "few-shot classification accuracy with the real "
                   "shots plus generated images", order=41, needs=frozenset({"fewshot", "conditioning"})),
        MetricSpec("fewshot_gain", "downstream", "higher", True, "accuracy with generated images minus accuracy "
                   "without them", order=42, needs=frozenset({"fewshot", "conditioning"})),
    ),
    compute=compute_fewshot,
))

LOWDATA = register(MetricFamily(
    name="lowdata",
    specs=(
        MetricSpec("lowdata_acc_real", "downstream", "higher", False, "all-unseen-class classification accuracy, "
                   "trained on n real images per class (not ranked)", order=43, needs=frozenset({"lowdata"})),
        MetricSpec("lowdata_acc_gen", "downstream", "higher", True, "the same, trained on n real plus generated "
                   "images per class", order=44, needs=frozenset({"lowdata"})),
        MetricSpec("lowdata_gain", "downstream", "higher", True, "low-data accuracy with generated images minus "
                   "accuracy without them", order=45, needs=frozenset({"lowdata"})),
    ),
    compute=compute_lowdata,
))
