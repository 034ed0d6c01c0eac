"""Active-learning core: sample selection and the classifier on embeddings (no Django)."""
