"""Few-shot and low-data classification with generated images (F2GAN Tables 3 and 2).

Both use the frozen domain backbone's L2-normalised features and a linear classifier (scikit-learn
``LogisticRegression``, lbfgs, fixed ``C`` and ``max_iter`` from the protocol: deterministic). A generator
helps when adding its images to the real training images raises the accuracy on held-out real images.

Few-shot (N-way, S-shot): every unseen class has a few fixed shot sets (``ClassPlan.shot_sets``: S images of
its conditional pool each); images are generated once per (class, shot set) from exactly those shots.
Episode ``e`` of the N-way setting picks N classes (all of them in the all-way setting) and one shot set per
class from ``default_rng([plan seed, protocol seed, N, e])``: the same episodes for every method, rank and
batch size. Queries are the class's held-out images (up to ``queries``; never a conditioning image). Per
episode the classifier is trained on the shots alone, then on the shots plus M generated images per class.
Reported: both accuracies and the gain, each a mean over episodes with a 95% interval 1.96 * std / sqrt(E).

Generated images never outweigh the real ones unless the protocol says so: with ``generated_weight =
"balanced"`` each generated image has sample weight S / M (n / M in low-data), so a class's generated images
together weigh exactly what its real images weigh; ``"unit"`` weighs every image 1 (F2GAN's training).

Low-data (``5real`` etc.): all unseen classes at once; the first n held-out images of each class train, the
rest of its held-out images test; generated images come from K of those n images. The interval is
1.96 * std / sqrt(test images) of the per-image correctness (for the gain: of the paired differences).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch

from fsgen_bench.eval.distributed import DistContext


def _normalise(x: torch.Tensor) -> np.ndarray:
    x = x.double()
    return (x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)).numpy()


def _classifier(c: float, max_iter: int):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=float(c), max_iter=int(max_iter), solver="lbfgs")


def _fit_predict(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, c: float, max_iter: int,
                 sample_weight: np.ndarray | None = None) -> np.ndarray:
    from sklearn.exceptions import ConvergenceWarning
    from threadpoolctl import threadpool_limits

    clf = _classifier(c, max_iter)
    # One BLAS/OpenMP thread: these problems are tiny (a few hundred samples), so threads only add
    # synchronisation (25x slower on a busy 2-core machine), and the result no longer depends on the core count.
    with warnings.catch_warnings(), threadpool_limits(limits=1):
        # A few lbfgs fits stop at max_iter on separable data; the prediction is still well defined.
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(x_train, y_train, sample_weight=sample_weight)
        return clf.predict(x_test)


def generated_weight(rule: str, n_real: int, n_generated: int) -> float:
    """Sample weight of one generated image: ``balanced`` gives a class's generated images together the weight
    of its ``n_real`` real images; ``unit`` weighs them 1 each."""
    if rule == "unit" or n_generated == 0:
        return 1.0
    if rule == "balanced":
        return float(n_real) / float(n_generated)
    raise ValueError(f"unknown generated_weight rule {rule!r}")


def mean_ci95(values: np.ndarray) -> tuple[float, float]:
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return float("nan"), float("nan")
    return float(values.mean()), float(1.96 * values.std() / np.sqrt(values.size))


def episode_plan(num_classes: int, *, ways: int, episodes: int, shot_sets: int, seed: int,
                 protocol_seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(class positions [E, ways], shot-set index [E, ways]) for the N-way setting."""
    classes = np.empty((episodes, ways), dtype=np.int64)
    sets = np.empty((episodes, ways), dtype=np.int64)
    for e in range(episodes):
        rng = np.random.default_rng([seed, protocol_seed, ways, e])
        classes[e] = rng.choice(num_classes, size=ways, replace=False)
        sets[e] = rng.integers(0, shot_sets, size=ways)
    return classes, sets


@dataclass
class EpisodeResults:
    ways: int
    acc_real: np.ndarray      # [E]
    acc_gen: np.ndarray       # [E]
    queries_per_class: int
    generated_per_class: int

    @property
    def gain(self) -> np.ndarray:
        return self.acc_gen - self.acc_real


def fewshot_episodes(shots: dict[int, torch.Tensor], generated: dict[int, torch.Tensor],
                     queries: dict[int, torch.Tensor], *, ways: int, episodes: int, seed: int, protocol_seed: int,
                     c: float, max_iter: int, weight_rule: str = "unit",
                     ctx: DistContext | None = None) -> EpisodeResults:
    """Run the N-way episodes. ``shots[c]``: [T, S, D]; ``generated[c]``: [T, M, D]; ``queries[c]``: [Q, D].

    Under DDP the episodes are sharded over ranks and the accuracies gathered in episode order.
    """
    ctx = ctx or DistContext()
    class_ids = sorted(shots)
    shot_sets = int(next(iter(shots.values())).shape[0])
    pick, sets = episode_plan(len(class_ids), ways=ways, episodes=episodes, shot_sets=shot_sets, seed=seed,
                              protocol_seed=protocol_seed)
    n_queries = min(int(q.shape[0]) for q in queries.values())
    norm_shots = {cid: _normalise(shots[cid]) for cid in class_ids}
    norm_gen = {cid: _normalise(generated[cid]) for cid in class_ids}
    norm_q = {cid: _normalise(queries[cid][:n_queries]) for cid in class_ids}
    mine = ctx.shard(list(range(episodes)))
    local = {}
    for e in mine:
        chosen = [class_ids[i] for i in pick[e]]
        xs, ys, xg, yg, xq, yq = [], [], [], [], [], []
        # (the class id must not be called `c`: that is the classifier's C, which v1 shadowed here, fitting every
        # episode with C = the id of its last class instead of the protocol's classifier_c)
        for label, (cid, t) in enumerate(zip(chosen, sets[e])):
            xs.append(norm_shots[cid][t]); ys.append(np.full(len(norm_shots[cid][t]), label))
            xg.append(norm_gen[cid][t]); yg.append(np.full(len(norm_gen[cid][t]), label))
            xq.append(norm_q[cid]); yq.append(np.full(n_queries, label))
        x_s, y_s = np.concatenate(xs), np.concatenate(ys)
        x_q, y_q = np.concatenate(xq), np.concatenate(yq)
        acc_real = float((_fit_predict(x_s, y_s, x_q, c, max_iter) == y_q).mean())
        x_sg, y_sg = np.concatenate([x_s, *xg]), np.concatenate([y_s, *yg])
        n_gen = len(x_sg) - len(x_s)
        w = generated_weight(weight_rule, len(xs[0]), len(xg[0]))
        weights = np.concatenate([np.ones(len(x_s)), np.full(n_gen, w)])
        acc_gen = float((_fit_predict(x_sg, y_sg, x_q, c, max_iter, weights) == y_q).mean())
        local[e] = (acc_real, acc_gen)
    merged: dict[int, tuple[float, float]] = {}
    for part in ctx.all_gather_object(local):
        merged.update(part)
    acc = np.array([merged[e] for e in range(episodes)], dtype=np.float64).reshape(episodes, 2)
    m = int(next(iter(generated.values())).shape[1])
    return EpisodeResults(ways, acc[:, 0], acc[:, 1], n_queries, m)


@dataclass
class LowDataResults:
    n_real: int
    correct_real: np.ndarray   # [test images] 0/1
    correct_gen: np.ndarray
    train_images: int
    test_images: int
    generated_per_class: int


def lowdata_accuracy(train: dict[int, torch.Tensor], generated: dict[int, torch.Tensor],
                     test: dict[int, torch.Tensor], *, n_real: int, c: float, max_iter: int,
                     weight_rule: str = "unit") -> LowDataResults:
    """All-class classifier trained on ``train[c]`` ([n, D]) with and without ``generated[c]`` ([M, D])."""
    class_ids = sorted(train)
    x_tr = np.concatenate([_normalise(train[cid]) for cid in class_ids])
    y_tr = np.concatenate([np.full(len(train[cid]), i) for i, cid in enumerate(class_ids)])
    x_te = np.concatenate([_normalise(test[cid]) for cid in class_ids])
    y_te = np.concatenate([np.full(len(test[cid]), i) for i, cid in enumerate(class_ids)])
    x_g = np.concatenate([_normalise(generated[cid]) for cid in class_ids])
    y_g = np.concatenate([np.full(len(generated[cid]), i) for i, cid in enumerate(class_ids)])
    correct_real = (_fit_predict(x_tr, y_tr, x_te, c, max_iter) == y_te).astype(np.float64)
    w = generated_weight(weight_rule, n_real, len(generated[class_ids[0]]))
    weights = np.concatenate([np.ones(len(x_tr)), np.full(len(x_g), w)])
    correct_gen = (_fit_predict(np.concatenate([x_tr, x_g]), np.concatenate([y_tr, y_g]), x_te, c, max_iter, weights)
                   == y_te).astype(np.float64)
    return LowDataResults(n_real, correct_real, correct_gen, len(y_tr), len(y_te),
                          int(next(iter(generated.values())).shape[0]))
