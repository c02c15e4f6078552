"""The named protocols, one function each; its docstring lists what it reproduces and what it does not.

Each function's docstring is the protocol's ``doc`` (printed by ``fsgen-bench protocols``): the codebase it
follows (file and commit), then point by point what is reproduced and what is not, and why. Bump a
protocol's version whenever one of its numbers would change; records keep the old id and stay readable.

Peer code read for these lists: edward3862/LoFGAN-pytorch at c169621 (HEAD) and 51620ad (paper era),
kobeshegu/ECCV2022_WaveGAN at 8ae91f9, mseitzer/pytorch-fid at tags 0.1.1 and v0.3.0, and
bcmi/F2GAN-Few-Shot-Image-Generation at 8151595 (its README also at 4be2d8b).
"""

from __future__ import annotations

import inspect

from fsgen_bench.eval.protocol_spec import ALL_WAYS, FewShotSetting, Protocol

#: LoFGAN evaluates at the native size of its .npy files (main_metric.py saves PNGs at that size).
LOFGAN_RESOLUTION = (("flowers", 128), ("animalfaces", 128), ("vggface", 64))


def _named(fn) -> Protocol:
    proto = fn()
    return Protocol(**{**{f: getattr(proto, f) for f in proto.__dataclass_fields__ if f not in ("doc", "base")},
                       "doc": inspect.cleandoc(fn.__doc__ or "")})


def clean() -> Protocol:
    """The suite's own protocol (no peer): every choice made for a trustworthy number, none for compatibility.

    Source: fsgen-bench. Reproduces no peer; it differs from the peers on purpose:
    - Pools: per unseen class a seeded permutation splits the images into a conditional pool of 10 (30 for
      VGGFace, whose classes are larger) and a disjoint real pool (every other image).
    - Generation: 128 images per class, 16 from each of 8 support sets of K = 3 distinct pool images (not
      resampled per image with replacement, which conditions most images on a repeated image).
    - Resolution: as served (the run's data.image_size); generated images rounded to uint8.
    - FID/KID: FID Inception with torch-fidelity's TF1-compatible resize (the reference FID input), and the
      domain backbone; all classes pooled. KID's interval is for the mean over its random subsets.
    - LPIPS: AlexNet (v0.1 heads) at the evaluation resolution on [-1, 1] inputs, all pairs per class.
    - Novelty and copy rate (quantile 0.05), class fidelity, precision/recall (k = 3) and density/coverage
      (k = 5): none of the peers measures these.
    - Few-shot: K = 3 real shots (the generator's own input) in all-unseen-class episodes (20 seeded episodes,
      4 shot sets per class, 16 generated images per shot set weighted so that a class's generated images
      together weigh what its 3 real shots weigh: a sample weight of 3/16 each, no cap). Measured real-only
      accuracy on glyphs (105 unseen classes, 32 px, quick preset, seed 0): 0.841 +- 0.003 (95% interval over
      the episodes). While choosing the setting (the same backbone kind, 20 episodes each), 3-shot 5-, 20- and
      60-way episodes gave 0.97, 0.95 and 0.89: no headroom (v1's 5-way 5-shot: 0.993). A fixed N-way would
      also not fit datasets with fewer unseen classes (Flowers: 17); "all" scales with the dataset.
    - Low-data: 5/10/15 real images per class plus 32 generated ones, weighted the same way.
    - v2 (from v1): the few-shot setting above (v1: 5- and 10-way 5-shot, generated images unweighted; and v1
      fitted each episode with C = a class id instead of classifier_c), the balanced weights in low-data, the
      KID interval, and the new metrics.
    """
    return Protocol(name="clean", version=2, source="fsgen-bench")


def lofgan() -> Protocol:
    """LoFGAN's evaluation script at HEAD: edward3862/LoFGAN-pytorch@c169621 main_metric.py.

    Reproduced:
    - Pools (main_metric.py:97-112): unseen = data[85:] / [119:] / [1802:]; each class's images permuted
      (line 108: unseeded, here seeded), the first 10 (VGGFace 30) condition, the rest are the real pool.
    - Reals (lines 124-133): 128 per class drawn with replacement from the real pool.
    - Fakes (lines 144-151): 128 per class, each from its own 3 pool images drawn with replacement
      (np.random.choice, line 146).
    - Pixels: fakes saved through utils.py:119-124 unloader ((x + 1) / 2, ToPILImage: mul(255).byte(), so
      truncated, not rounded); at the native size, 128 px for Flowers and Animal Faces, 64 px for VGGFace.
    - FID (lines 17-24): `python -m pytorch_fid real fake` (pytorch-fid 0.1.1; same input in 0.3.0): bilinear
      resize of [0, 1] images to 299 (align_corners=False, inception.py:146-150), then 2x - 1 (lines 152-153),
      FID Inception pool3, all classes pooled.
    - LPIPS (lines 27-55): lpips.LPIPS(net='vgg') v0.1; each fake cv2.resize'd to 32 x 32 (bilinear on
      uint8), lpips.im2tensor (to [-1, 1]) and then model(..., normalize=True), which maps [-1, 1] again to
      [-3, 1]: the published LoFGAN and WaveGAN LPIPS numbers were computed on that range, and so is this
      one. All C(128, 2) pairs of a class; mean per class, then over classes.
    Not reproduced:
    - The random streams: LoFGAN draws from numpy's global generator and the generator's own noise; these
      draws are seeded per class from the run seed instead (the same images for every method).
    - pytorch-fid's Fréchet distance (scipy sqrtm) is computed by torchmetrics from the same features
      (the same formula; float64 statistics).
    - VGGFace: LoFGAN's .npy holds floats in [0, 1]; its script conditions on the floats and truncates reals
      with np.uint8(x * 255) (line 130-131); this suite's reader rounds once to uint8 for both.
    - Images served at another size than LoFGAN's (e.g. 64-px Flowers in the quick preset) are brought to
      the protocol's resolution by bilinear resizing; the record carries both sizes.
    - Few-shot and low-data classification: LoFGAN ships no classification script (issue #3 unanswered);
      the suite's own settings (those of clean) are reported, labelled as such.
    - The metrics LoFGAN does not compute (KID, novelty, class fidelity, precision/recall, density/coverage,
      domain FID) are added; they do not change FID or LPIPS.
    - v2 (from v1): pytorch-fid's input and LoFGAN's LPIPS range, resize and pixel truncation (v1 used
      torch-fidelity's resize, [-1, 1] and rounding), the per-dataset resolution, and clean's new few-shot.
    """
    return Protocol(
        name="lofgan", version=2, source="edward3862/LoFGAN-pytorch@c169621:main_metric.py",
        permute=True, supports_per_class=128, real_sampling="replace", support_draw="replace",
        resolution_by_dataset=LOFGAN_RESOLUTION, quantize="floor", fid_input="pytorch-fid",
        lpips_net="vgg", lpips_size=32, lpips_resize="cv2-linear", lpips_range=(-3, 1), lpips_pairs="all",
    )


def lofgan_paper() -> Protocol:
    """LoFGAN's paper-era script: edward3862/LoFGAN-pytorch@51620ad main_metric.py (WaveGAN's too).

    The LoFGAN (ICCV 2021) and WaveGAN (ECCV 2022) papers' numbers come from this version; WaveGAN ships it
    unchanged apart from the pytorch-fid call (kobeshegu/ECCV2022_WaveGAN@8ae91f9 main_metric.py:22).
    Reproduced, where it differs from `lofgan` (everything else is as there):
    - Seed 0 for everything (lines 77-81): the protocol seed is 0; see below for the streams.
    - No permutation: the first 10 (VGGFace 30) images of each class condition, in file order (line 103).
    - Reals: every remaining image of each class, once (line 109), not 128 drawn with replacement; so
      Flowers' FID compares 2,176 fakes with 510 reals (17 x 30), fewer than the 2048 feature dimensions.
    - FID via `python -m pytorch_fid` (line 21, pytorch-fid 0.1.1; WaveGAN: any version, line 22): the input
      is checked against pytorch-fid's own code in tests/test_eval_peer_parity.py.
    - LPIPS as in `lofgan` ([-3, 1], VGG, 32 px via cv2.resize, all pairs), checked against the lpips package
      called the way the script calls it.
    Not reproduced: as for `lofgan` (random streams: np.random.seed(0) fixes LoFGAN's draws only together
    with its generator's own noise, so the draws here are seeded per class from the run seed; VGGFace
    quantisation; no classification script; added metrics).
    """
    base = lofgan()
    return Protocol(**{**base.__dict__, "name": "lofgan-paper", "version": 1, "permute": False,
                       "real_sampling": "pool",
                       "source": "edward3862/LoFGAN-pytorch@51620ad:main_metric.py"})


def f2gan() -> Protocol:
    """F2GAN's released evaluation: bcmi/F2GAN-Few-Shot-Image-Generation@8151595, minus its bugs.

    Reproduced:
    - Conditioning: the first 10 images of each unseen class on every dataset, in file order
      (data_with_matchingclassifier.py:207-210, `--general_classification_samples 10` in the README of
      4be2d8b, 2020-10-09, lines 172-198, the version of the paper's time; the README at 8151595 says 3, which
      leaves one possible support set). Support sets of K = 3 distinct pool images (line 221-222, replace=False).
    - Generation: 128 images per class (`--num_generations 128`); F2GAN makes int(128 / 10) = 12 images per
      support set (generation_builder_with_matchingclassifier.py:303); 128 is not a multiple of 12, so
      16 support sets of 8 images each.
    - Resolution: generated images saved at 128 px (cv2.resize INTER_LINEAR of the 96-px output, line 414);
      FID and LPIPS see 128-px images.
    - Real set: the conditioning images plus the other test images of the class, up to 128 per class
      (lines 416-433 and 462-475 write both into visual_outputs_realimages).
    - LPIPS (LPIPS_pytorchnew/compute_dists_pair.py:17-50): AlexNet (net-lin, v0.1) on [-1, 1] at 128 px;
      pairs (i, j > i) with i among the first 10 images of the class; mean per class, then over classes.
    - Few-shot (F2GAN Table 3, README line 291): 5-way and 10-way 5-shot with 128 generated images per class
      from the 5 shots, all weighted 1 as in F2GAN's classifier training (generated images outweigh the shots,
      as there). Low-data (Table 2): 5/10/15 real images per class, 512 generated (README line 268).
    Not reproduced:
    - FID backbone: F2GAN scores with torchvision's ImageNet inception_v3 (pretrained=True, not the FID
      weights), after PIL resizes to 128 then 299 and ImageNet normalisation
      (GAN_Metrics_Tensorflow/calculate_FID_starganv2.py:125-198). This protocol uses the FID Inception
      (torch-fidelity's input) and the domain backbone: its FID is not F2GAN's number.
    - The generated-image folder also receives the conditioning tiles (line 438: `k > -1` keeps every tile),
      leaking real images into the fake set; not reproduced (a bug).
    - The per-category FID loop doubles its running value (cal_gan_metrics_from_files.py:352); not used.
    - scipy.misc.imsave rescales each float image to its own min-max before saving; images here are
      quantised once, by rounding.
    - F2GAN's LPIPS walks files in os.walk order and scores a class only when it has more than 11 files;
      here the first 10 generated images (support sets in plan order) against the rest.
    - Classifier: F2GAN fine-tunes the FC layer of a ResNet-18 pretrained on seen classes for 50 epochs
      (densenet_classifier.py); here a logistic regression on the frozen domain backbone. The accuracies
      compare methods under this protocol, not with F2GAN's tables.
    - v2 (from v1): the first 10 on VGGFace too (v1 inherited LoFGAN's 30), the real set includes the
      conditioning images, 128-px resolution (v1: as served, with a 128-px FID resize only), 16 x 8 support
      sets (v1: 128 x 1), and the metrics added to every protocol.
    """
    return Protocol(
        name="f2gan", version=2, source="bcmi/F2GAN-Few-Shot-Image-Generation@8151595",
        permute=False, cond_pool_by_dataset=(), supports_per_class=16, support_draw="distinct",
        real_includes_cond=True, real_pool_max=128, resolution=128, lpips_net="alex", lpips_pairs="first10",
        fewshot=FewShotSetting(ways=(5, 10), shots=5, episodes=100, generated_per_class=128,
                               generated_weight="unit", lowdata_generated_per_class=512),
    )


NAMED: tuple[Protocol, ...] = tuple(_named(fn) for fn in (clean, lofgan, lofgan_paper, f2gan))

__all__ = ["ALL_WAYS", "NAMED", "LOFGAN_RESOLUTION"]
