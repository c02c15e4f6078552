"""Dataset readers, one module per dataset, each registering itself in
:data:`fsgen_bench.data.source.DATASETS` when imported (this package imports them all).

``glyphs``       the embedded default: characters of several scripts drawn from matplotlib's fonts
``npy``          any ``.npy`` in the F2GAN/LoFGAN layout ``[classes, images, H, W, C]`` (``data.path``)
``folder``       an image-folder tree, one sub-folder per class (``data.path``)
``omniglot``     DAGAN's ``omniglot_data.npy`` if present, else the Omniglot PNG tree (torchvision layout)
``emnist``       EMNIST "balanced" through torchvision (train and test pooled)
``flowers``      LoFGAN's ``flower_c8189_s128_data_rgb.npy`` if present, else torchvision's Flowers102
``vggface``      DAGAN/LoFGAN's ``vgg_face_data_rgb.npy`` (or ``vgg_face_data.npy``)
``animalfaces``  LoFGAN's ``animal_128.npy`` if present, else a folder tree ``animalfaces/<class>/``

Shared pieces: :mod:`.common` (config values, the split, messages), :mod:`.npy` (reading arrays),
:mod:`.decode` (decoding image files and the cache of decoded arrays), :mod:`.folder` (image-folder trees).

Every reader returns uint8 ``[n, S, S, C]`` per class (``S = data.image_size``, ``C = data.channels``) and the
field's seen/unseen split: the first ``data.num_seen_classes`` classes in file order are seen, the next
``data.num_unseen_classes`` (default: all the rest) unseen. Classes past that are never read.

Where a named dataset can come from two places, ``data.source`` (``auto`` by default) picks one; ``auto``
prefers the ``.npy`` file, because that array is what the published F2GAN/LoFGAN code sliced its split from.
Nothing downloads unless ``data.download`` is true, and then only through torchvision's own download code.

A new dataset is one module here that calls ``DATASETS.register``, one import line below, and one
``configs/datasets/<name>.yaml``.
"""

from fsgen_bench.data.readers import (animalfaces, emnist, flowers, folder, glyphs, npy,  # noqa: F401
                                      omniglot, vggface)
