"""Loading worlds and real checkpoints: configs, pipeline kinds, model bundles, metric models,
the diffusion loss and the artifact formats. Imports only the foundation and the tiny world."""
