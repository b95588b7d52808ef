"""nanoemox_jax: Nano-EmoX and its P2E curriculum in JAX / Flax NNX."""

__version__ = "0.1.0"
