"""hipgen: a VQ-VAE + gated PixelCNN generative model of 2D pelvic MRI slices.

Modules, in pipeline order: config, phantom, data, quantizer, vqvae, training, metrics,
codes, pixelcnn, sampling, sample_quality, plotting, widgets, checkpoints, bench, cli.
"""

__version__ = "0.1.0"
