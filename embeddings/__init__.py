"""Trapwise embeddings: crops -> vectors -> nearest-neighbour index.

The pure, Django-free core (arrays, tensors and paths in; dataclasses out):
    model      -- backbone + projection head (``EmbeddingNet``), weight loading, checkpoints.
    inference  -- image crops on disk -> unit-norm float32 embeddings.
    store      -- per-model-version ``ids.npy`` / ``vectors.npy`` storage.
    index      -- exact FAISS nearest-neighbour index keyed by crop primary keys.

The Django app modules in this package (models, services, selectors, migrations) build on
that core; the core modules must never import Django, and this file imports nothing.
"""
