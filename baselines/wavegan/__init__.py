"""WaveGAN (Yang et al., ECCV 2022). See CARD.md."""
