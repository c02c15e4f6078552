"""LoFGAN (Gu et al., ICCV 2021). See CARD.md."""
