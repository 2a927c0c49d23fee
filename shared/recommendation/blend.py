"""The blend's weights learned from recommendation feedback: which sources' candidates
shoppers click, with position bias removed.

A recommendation's score is ``sum_s weight_s * value_s``, each source's value normalised to
[0, 1] over the page's candidates (``Recommender._blend``); every shown item's values are
logged with the page (``shared.storage.served``). Feedback says which shown items were
clicked. A position-based click model (the one the trainer fits for search,
``shared.training.clicks``) says a click needs the shopper to look (``examination(k)``, by
position) and to like what they see::

    P(click | item, position k) = examination(k) * sigmoid(b + sum_s w_s * value_s)

With examination fixed (measured on the search pages the gateway shuffles), ``w`` is
fitted by maximum likelihood, ``w >= 0``, with a ridge pull towards the current weights
(so sources the feedback says little about keep theirs). Ranking by ``w . value`` is
ranking by the modelled attractiveness, so the fitted ``w``, rescaled to the current
weights' sum, are the new weights. Without the examination term, the items the current
weights put first would be credited with the clicks their position earned.

A placement's fit is used only from ``min_clicks`` clicks on; below that it keeps its
weights.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

# Clicks a placement needs before its learned weights are used.
MIN_CLICKS = 200
# Strength of the ridge pull towards the current weights (their logistic scale).
PRIOR = 50.0


@dataclass(frozen=True, slots=True)
class ShownItem:
    """One recommended product as a shopper saw it: its page's placement, its 1-based
    position, each source's value on that page, and whether it was clicked."""

    placement: str
    position: int
    values: Mapping[str, float]
    clicked: bool


@dataclass(frozen=True)
class BlendFit:
    """A placement's learned weights (its current ones when not ``used``) and the
    evidence: impressions and clicks read, and the fit's log-likelihood gain over the
    current weights (per impression, > 0: the learned weights explain the clicks better)."""

    placement: str
    weights: dict[str, float]
    impressions: int
    clicks: int
    used: bool
    gain: float = 0.0
    reason: str = ""
    current: dict[str, float] = field(default_factory=dict)


def _nll(
    params: np.ndarray,
    x: np.ndarray,
    clicked: np.ndarray,
    seen: np.ndarray,
    prior_w: np.ndarray,
    prior: float,
) -> tuple[float, np.ndarray]:
    """Negative log-likelihood (with the ridge pull) and its gradient; ``params`` = b, w."""
    b, w = params[0], params[1:]
    z = b + x @ w
    a = 1.0 / (1.0 + np.exp(-z))
    p = np.clip(seen * a, 1e-12, 1 - 1e-12)
    loss = -(clicked * np.log(p) + (1 - clicked) * np.log(1 - p)).sum()
    # d loss / d z: the click term's is -(1 - a); the skip term's is seen*a*(1-a)/(1-p).
    dz = -clicked * (1 - a) + (1 - clicked) * seen * a * (1 - a) / (1 - p)
    grad = np.concatenate([[dz.sum()], x.T @ dz])
    diff = w - prior_w
    loss += prior * float(diff @ diff)
    grad[1:] += 2 * prior * diff
    return float(loss), grad


def fit_placement(
    placement: str,
    items: Sequence[ShownItem],
    current: Mapping[str, float],
    examination: Sequence[float],
    min_clicks: int = MIN_CLICKS,
    prior: float = PRIOR,
) -> BlendFit:
    """The learned weights of ``placement``'s sources (the keys of ``current``) from its
    shown items; ``examination[k - 1]`` is position k's (the last one's for later ones)."""
    from scipy.optimize import minimize

    sources = sorted(current)
    clicks = sum(item.clicked for item in items)
    base = BlendFit(placement, dict(current), len(items), clicks, False, current=dict(current))
    if not sources:
        return replace(base, reason="no sources")
    if clicks < min_clicks:
        return replace(base, reason=f"{clicks} clicks, fewer than {min_clicks}")
    x = np.array([[item.values.get(s, 0.0) for s in sources] for item in items])
    clicked = np.array([float(item.clicked) for item in items])
    last = len(examination) - 1
    seen = np.array([examination[min(max(item.position, 1) - 1, last)] for item in items])
    w0 = np.array([float(current[s]) for s in sources])
    scale = max(w0.sum(), 1e-9)

    def at(params: np.ndarray) -> tuple[float, np.ndarray]:
        return _nll(params, x, clicked, seen, prior_w, prior)

    # The current weights as a logistic model: their scale fitted, the intercept too.
    prior_w = np.zeros(len(sources))
    start = minimize(
        lambda p: at(np.concatenate([[p[0]], p[1] * w0 / scale]))[0],
        np.array([-2.0, 1.0]),
        method="L-BFGS-B",
        bounds=[(-20, 20), (0, 50)],
    )
    b0, k0 = start.x
    prior_w = k0 * w0 / scale
    current_loss = at(np.concatenate([[b0], prior_w]))[0]
    result = minimize(
        at,
        np.concatenate([[b0], prior_w]),
        jac=True,
        method="L-BFGS-B",
        bounds=[(-20, 20)] + [(0, None)] * len(sources),
    )
    w = result.x[1:]
    if not w.sum() > 0:
        return replace(base, reason="the fit put every weight at 0")
    learned = {s: float(v) for s, v in zip(sources, w * scale / w.sum(), strict=True)}
    gain = (current_loss - float(result.fun)) / len(items)
    return BlendFit(placement, learned, len(items), clicks, True, gain, "", dict(current))


def fit_blend(
    items: Iterable[ShownItem],
    current: Mapping[str, Mapping[str, float]],
    examination: Sequence[float],
    min_clicks: int = MIN_CLICKS,
    prior: float = PRIOR,
) -> dict[str, BlendFit]:
    """Each placement of ``current`` fitted on its shown items (see :func:`fit_placement`)."""
    by_placement: dict[str, list[ShownItem]] = {name: [] for name in current}
    for item in items:
        if item.placement in by_placement:
            by_placement[item.placement].append(item)
    return {
        name: fit_placement(name, shown, current[name], examination, min_clicks, prior)
        for name, shown in by_placement.items()
    }
