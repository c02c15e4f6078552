"""Non-local Attentional Fusion (NAF), the "filling" half of F2GAN.

Hong et al., "F2GAN: Fusing-and-Filling GAN for Few-shot Image Generation", ACM MM 2020 (arXiv 2008.01999),
its ACM MM poster (Fig. 3), and the official TF1 code bcmi/F2GAN-Few-Shot-Image-Generation @ 8151595
(``dagan_architectures_with_matchingclassifier.py`` ``UResNetGenerator.attention``, L404-423, called per image
at L971). See CARD.md beside this file.

For every conditional image k the decoder feature phi (at one upsampling stage) borrows from the
coefficient-weighted shallow encoder feature a_k xi^k of the same resolution:

    poster orientation (default, ``query="decoder"``):
        A^k = softmax_m( g(phi)[n] . f(a_k xi^k)[m] )             n: decoder position, m: positions of image k
        eta = sum_k v( sum_m A^k[n, m] h(a_k xi^k)[m] )
    release-code orientation (``query="encoder"``): the query comes from a_k xi^k and the key from phi
        (the softmax runs over the decoder's positions); the values still come from a_k xi^k.
    ``residual=True`` (the code): eta = sum_k ( gamma * v(...) + a_k xi^k ) with a learnt scalar gamma that
        starts at 0, so that at initialisation NAF equals MatchingGAN's weighted skip.

f, g, h, v are spectrally normalised 1x1 convs. Unlike the release (separate weights ``attention_{k}`` per k),
the weights are shared over k, as the poster draws them: that keeps the module independent of K, so a
generator trained with K=3 can condition on any number of images. All K attentions are computed as one
batched einsum over [B, K]; there is no loop over images or the batch.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from fsgen_bench.methods.blocks import conv2d


class NAF(nn.Module):
    """NAF skip-fusion module: ``(decoder [B,C_d,h,w], encoder [B,K,C_e,h,w], a [B,K]) -> ([B,C_e,h,w], A)``.

    ``A`` (returned when ``need_weights``) is [B, K, h*w, h_e*w_e]: row n is where output position n borrows
    from in image k; each row sums to 1 over image k's positions.
    """

    def __init__(self, decoder_channels: int, encoder_channels: int, *, query: str = "decoder",
                 residual: bool = False, key_channels: int | None = None, sn: bool = True) -> None:
        super().__init__()
        if query not in ("decoder", "encoder"):
            raise ValueError(f"NAF query must be 'decoder' (poster) or 'encoder' (release code); got {query!r}")
        self.query = query
        self.residual = bool(residual)
        # SAGAN's C/8 key width, floored at 8 so that the narrow networks of the CPU presets keep a usable
        # similarity space (C/8 of a 16-channel feature would be a 2-d dot product).
        kc = int(key_channels) if key_channels else min(encoder_channels, max(8, encoder_channels // 8))
        self.key_channels = kc
        q_in, k_in = (decoder_channels, encoder_channels) if query == "decoder" else (encoder_channels, decoder_channels)
        self.to_query = conv2d(q_in, kc, 1, sn=sn)     # g in the poster
        self.to_key = conv2d(k_in, kc, 1, sn=sn)       # f
        self.to_value = conv2d(encoder_channels, encoder_channels, 1, sn=sn)   # h
        self.to_out = conv2d(encoder_channels, encoder_channels, 1, sn=sn)     # v
        if self.residual:
            self.gamma = nn.Parameter(torch.zeros(()))
        self.out_channels = encoder_channels

    def forward(self, decoder: Tensor, encoder: Tensor, coefficients: Tensor, need_weights: bool = False):
        b, k, c_e, h_e, w_e = encoder.shape
        h_d, w_d = decoder.shape[-2:]
        weighted = encoder * coefficients.to(encoder.dtype)[:, :, None, None, None]     # a_k xi^k
        flat_enc = weighted.reshape(b * k, c_e, h_e, w_e)
        value = self.to_value(flat_enc).reshape(b, k, c_e, h_e * w_e)                  # [B, K, C_e, M]
        if self.query == "decoder":
            q = self.to_query(decoder).reshape(b, self.key_channels, h_d * w_d)         # [B, c, N]
            key = self.to_key(flat_enc).reshape(b, k, self.key_channels, h_e * w_e)    # [B, K, c, M]
            logits = torch.einsum("bcn,bkcm->bknm", q, key)
        else:
            if (h_d, w_d) != (h_e, w_e):
                raise ValueError("the encoder-query NAF needs equal decoder and encoder resolutions")
            q = self.to_query(flat_enc).reshape(b, k, self.key_channels, h_e * w_e)    # [B, K, c, N]
            key = self.to_key(decoder).reshape(b, self.key_channels, h_d * w_d)         # [B, c, M]
            logits = torch.einsum("bkcn,bcm->bknm", q, key)
        attention = torch.softmax(logits.float(), dim=-1).to(value.dtype)              # [B, K, N, M]
        read = torch.einsum("bknm,bkcm->bkcn", attention, value).reshape(b * k, c_e, h_d, w_d)
        out = self.to_out(read).reshape(b, k, c_e, h_d, w_d)
        if self.residual:
            out = self.gamma.to(out.dtype) * out + weighted
        fused = out.sum(dim=1)
        return fused, (attention if need_weights else None)
