"""Training: the shared step loop, stage 1 (inversion), stage 2 (fine-tuning), the batched lr
grid, the method registry and the opt-in compile. Imports only the foundation and models."""
