"""hipgen: a VQ-VAE + gated PixelCNN generative model of 2D pelvic MRI slices.

Modules, by the step they serve (the README's Layout has a line on each): settings (config,
layout, devices); data (phantom/, data, nifti, preprocess, decode_cache, data_types); the
VQ-VAE (quantizer, vqvae, training, resume, metrics, codes); the prior (pixelcnn, attention,
hierarchy, sampling, sample_quality, widgets); judging (segmenter, judge, judge_plots); a run
(run, checkpoints, rundir, pipeline); around it (plotting/, cli, bench, prior_variants,
notebooks).
"""

__version__ = "0.1.0"
