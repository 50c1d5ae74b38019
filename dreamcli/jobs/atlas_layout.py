"""An activation atlas's second stage: the samples laid out in 2-D.

UMAP (the ``dreamcli[atlas]`` extra), t-SNE (scikit-learn, which comes with the
same extra) or PCA (torch only).  UMAP and t-SNE first see the samples
projected on their 50 main (uncentred) directions, which keeps cosine
similarity and makes the neighbour search fast; their metric is cosine.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
import torch.nn.functional as F

from dreamcli.errors import SettingsError

EXTRA = "pip install 'dreamcli[atlas]' (in a checkout: pip install '.[atlas]')"
# UMAP and t-SNE see the samples projected on this many main directions.
REDUCED_DIMS = 50
# The layout's percentiles that map to the square's edges.
EDGE_QUANTILE = 0.01


def require_layout(method: str) -> None:
    """Raise SettingsError, naming the extra, when ``method``'s library is not installed."""
    if method != "pca":
        _import_layout(method)


def _import_layout(method: str):
    try:
        if method == "umap":
            import umap

            return umap.UMAP
        from sklearn.manifold import TSNE

        return TSNE
    except ImportError:
        what = "UMAP (umap-learn)" if method == "umap" else "t-SNE (scikit-learn)"
        raise SettingsError(
            f"the atlas's {what} layout is an optional extra: {EXTRA}, or use the pca method"
        ) from None


def _main_directions(x: torch.Tensor, k: int, center: bool) -> torch.Tensor:
    """``x`` (N, C) projected on its ``k`` main directions: exact, deterministic signs."""
    x64 = x.double()
    if center:
        x64 = x64 - x64.mean(0)
    _values, vectors = torch.linalg.eigh(x64.t() @ x64)
    vectors = vectors.flip(1)[:, :k]  # largest first
    signs = torch.sign(vectors.gather(0, vectors.abs().argmax(0, keepdim=True)))
    return (x64 @ (vectors * signs)).float()


def layout(vectors: torch.Tensor, method: str, seed: int = 0) -> torch.Tensor:
    """Stage 2: one 2-D point per row of ``vectors``, seeded and reproducible: (N, 2)."""
    if method == "pca":
        points = _main_directions(vectors, 2, center=True)
        return points if points.shape[1] == 2 else F.pad(points, (0, 2 - points.shape[1]))
    cls = _import_layout(method)
    n = vectors.shape[0]
    reduced = _main_directions(vectors, min(REDUCED_DIMS, vectors.shape[1]), center=False).numpy()
    if method == "umap":
        reducer = cls(
            n_components=2,
            n_neighbors=max(2, min(15, n - 1)),
            min_dist=0.01,
            metric="cosine",
            random_state=seed,
            init="spectral" if n > 16 else "random",
        )
    else:
        reducer = cls(
            n_components=2,
            perplexity=max(1.0, min(30.0, (n - 1) / 3)),
            metric="cosine",
            init="pca",
            random_state=seed,
        )
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=".*random_state.*", category=UserWarning
        )  # seeded: one thread
        points = reducer.fit_transform(reduced)
    return torch.from_numpy(np.asarray(points, dtype=np.float32))


def normalised(points: torch.Tensor) -> torch.Tensor:
    """Each axis scaled so that its 1st-99th percentiles span [0, 1]; the rest clipped to the edges."""
    low = torch.quantile(points, EDGE_QUANTILE, dim=0)
    high = torch.quantile(points, 1 - EDGE_QUANTILE, dim=0)
    return ((points - low) / (high - low).clamp_min(1e-12)).clamp(0.0, 1.0)
