"""Training judgments from shoppers' feedback: clicks, skips and purchases, position bias removed.

A click says a result was looked at *and* found attractive; a skip says it was either not
looked at or not attractive. Shoppers look at the top of a page more than at its bottom,
so raw click rates rank whatever served first above what it buried, and a model trained
on them learns to repeat the current ranking. :func:`fit_click_model` fits a
position-based click model (Craswell et al., WSDM 2008)::

    P(click | query q, product d, position k) = examination(k) * attractiveness(q, d)

``examination(k) = k ** -eta`` (position 1: 1) is fitted by maximum likelihood on the
**explored** pages alone: the gateway shuffles the top results of a small share of
searches (``shared.experiments.exploration``), and on those a product's attractiveness
does not depend on where it landed (Joachims, Swaminathan and Schnabel, WSDM 2017).
Fitting examination jointly with a free attractiveness per product on every page, as EM
does (Wang et al., WSDM 2018), gave biased curves here: where most products keep their
position, each has one or two shuffled impressions to settle many parameters' worth of
doubt. ``attractiveness(q, d)``, the click rate ``d`` would get at the top for ``q``, is
then fitted on every page by EM with examination held fixed and a weak beta prior.

A product's *gain* for a query is its attractiveness, raised by the share of its clicks
that led to a cart or a purchase (up to twice): ``min(1, a * (1 + conversions / clicks / 2))``.
:func:`write_click_dataset` writes the gains as a WANDS-format training folder whose
``label.csv`` carries them in a ``gain`` column (with the grade they round to), which the
cross-encoder recipe trains on like the store's own judgments.
"""

from __future__ import annotations

import csv
import hashlib
import shutil
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import sqlalchemy
from sqlalchemy import select

from shared.data.dataset import EXACT, IRRELEVANT, PARTIAL
from shared.storage.feedback import FeedbackEvent, erasure_keys

# Positions past this share one examination parameter (few shoppers look that far).
MAX_POSITION = 20
# Gain grades: the label a gain rounds to (the dev metrics read grades).
EXACT_GAIN, PARTIAL_GAIN = 0.3, 0.1
# Strength of the prior on attractiveness, in impressions at the top (pulls products seen
# once or twice towards the average).
PRIOR_IMPRESSIONS = 2.0
# Position bias assumed when the explored pages hold too few clicks to measure it.
DEFAULT_ETA = 1.0
MIN_EXPLORED_CLICKS = 50
_CONVERSIONS = ("add_to_cart", "purchase")


def normalise_query(text: str) -> str:
    """The key queries are grouped by: lower case, single spaces."""
    return " ".join(text.lower().split())


@dataclass(frozen=True, slots=True)
class Impression:
    """One product shown on one logged page, and what the shopper did with it."""

    query: str
    product_id: str
    position: int
    clicked: bool
    conversions: int = 0
    # Whether the page's top results were shuffled (the gateway's exploration).
    explored: bool = False


@dataclass(frozen=True, slots=True)
class Judgment:
    """What the feedback says of one product for one query."""

    query: str
    product_id: str
    impressions: int
    clicks: int
    conversions: int
    attractiveness: float
    gain: float

    @property
    def label(self) -> str:
        if self.gain >= EXACT_GAIN:
            return EXACT
        return PARTIAL if self.gain >= PARTIAL_GAIN else IRRELEVANT


@dataclass
class ClickModelFit:
    """The fitted click model and the judgments it gives."""

    # examination[k - 1]: how likely a shopper looks at position k (position 1: 1.0).
    examination: list[float]
    # examination(k) = k ** -eta; measured on explored pages, or assumed (DEFAULT_ETA).
    eta: float
    measured: bool
    explored_clicks: int
    pages: int
    judgments: list[Judgment] = field(default_factory=list)
    impressions: int = 0
    clicks: int = 0


def read_impressions(
    engine: sqlalchemy.Engine,
    since: datetime | None = None,
    until: datetime | None = None,
) -> tuple[list[Impression], int]:
    """Every impression of the feedback store whose token named its query, with the click
    and conversions on the same page; and how many pages they came from.

    A page is one attribution token's request. Events without a query (tokens of earlier
    versions, events sent without a token) are left out, as are clicks with no impression.
    """
    table = FeedbackEvent.__table__
    query = select(
        table.c.request_id,
        table.c.query,
        table.c.type,
        table.c.product_id,
        table.c.position,
        table.c.explored,
    ).where(table.c.request_id.is_not(None), table.c.query.is_not(None))
    if since is not None:
        query = query.where(table.c.occurred_at >= since)
    if until is not None:
        query = query.where(table.c.occurred_at < until)
    shown: dict[tuple[str, str], tuple[str, int, bool]] = {}
    clicked: set[tuple[str, str]] = set()
    converted: dict[tuple[str, str], int] = defaultdict(int)
    with engine.connect() as conn:
        for request_id, text, kind, product_id, position, explored in conn.execute(query):
            key = (request_id, product_id)
            if kind == "impression":
                if position and position > 0:
                    shown[key] = (normalise_query(text), int(position), bool(explored))
            elif kind == "click":
                clicked.add(key)
            elif kind in _CONVERSIONS:
                converted[key] += 1
    impressions = [
        Impression(
            q, key[1], pos, key in clicked, converted.get(key, 0) if key in clicked else 0, x
        )
        for key, (q, pos, x) in shown.items()
    ]
    return impressions, len({key[0] for key in shown})


def fit_examination(impressions: Iterable[Impression]) -> tuple[float, int]:
    """The position-bias exponent ``eta`` of ``examination(k) = k ** -eta``, by maximum
    likelihood on the explored pages' impressions, and how many clicks it rests on.

    On a shuffled page a product's attractiveness does not depend on its position, so the
    click rate at position k is ``examination(k)`` times the page's mean attractiveness."""
    from scipy.optimize import minimize

    n = np.zeros(MAX_POSITION)
    c = np.zeros(MAX_POSITION)
    for imp in impressions:
        if imp.explored:
            k = min(imp.position, MAX_POSITION) - 1
            n[k] += 1
            c[k] += imp.clicked
    clicks = int(c.sum())
    if clicks == 0:
        return DEFAULT_ETA, 0
    ks = np.arange(1, MAX_POSITION + 1, dtype=np.float64)
    shown = n > 0

    def nll(x: np.ndarray) -> float:
        eta, mean = x
        q = np.clip(ks[shown] ** -eta * mean, 1e-12, 1 - 1e-12)
        return float(-(c[shown] * np.log(q) + (n - c)[shown] * np.log(1 - q)).sum())

    start = np.array([DEFAULT_ETA, min(0.9, max(1e-3, c[0] / max(n[0], 1.0)))])
    result = minimize(nll, start, method="L-BFGS-B", bounds=[(0.0, 4.0), (1e-4, 1.0)])
    return float(result.x[0]), clicks


def fit_click_model(
    impressions: Iterable[Impression],
    pages: int = 0,
    min_explored_clicks: int = MIN_EXPLORED_CLICKS,
    max_iterations: int = 200,
    tolerance: float = 1e-7,
) -> ClickModelFit:
    """Examination by position (from the explored pages) and attractiveness by (query,
    product) from every page, examination held fixed (EM with a beta prior).

    With fewer than ``min_explored_clicks`` clicks on explored pages, examination is not
    measured but assumed: ``1 / k`` (``eta`` 1, the usual first guess), and the fit says so.

    Examination comes from the explored pages alone: fitting it jointly with a free
    attractiveness per product, from pages where most products keep their position, gives
    a biased answer (each product has many parameters' worth of doubt and one or two
    shuffled impressions to settle it)."""
    impressions = list(impressions)
    eta, explored_clicks = fit_examination(impressions)
    measured = explored_clicks >= min_explored_clicks
    if not measured:
        eta = DEFAULT_ETA
    pair_of: dict[tuple[str, str], int] = {}
    cell_of: dict[tuple[int, int], int] = {}
    n_cells: list[int] = []
    c_cells: list[int] = []
    conversions: dict[int, int] = defaultdict(int)
    for imp in impressions:
        pair = pair_of.setdefault((imp.query, imp.product_id), len(pair_of))
        k = min(imp.position, MAX_POSITION) - 1
        cell = cell_of.get((pair, k))
        if cell is None:
            cell = cell_of[(pair, k)] = len(n_cells)
            n_cells.append(0)
            c_cells.append(0)
        n_cells[cell] += 1
        c_cells[cell] += int(imp.clicked)
        conversions[pair] += imp.conversions
    examination = np.arange(1, MAX_POSITION + 1, dtype=np.float64) ** -eta
    fit = ClickModelFit([float(x) for x in examination], eta, measured, explored_clicks, pages)
    if not cell_of:
        return fit
    cells = np.array(list(cell_of), dtype=np.int64)
    pair_idx, pos_idx = cells[:, 0], cells[:, 1]
    n = np.array(n_cells, dtype=np.float64)
    c = np.array(c_cells, dtype=np.float64)
    n_pairs = len(pair_of)
    pair_n = np.bincount(pair_idx, weights=n, minlength=n_pairs)
    mean_ctr = float(c.sum() / n.sum())
    prior_a = PRIOR_IMPRESSIONS * max(mean_ctr, 1e-3)
    prior_b = PRIOR_IMPRESSIONS - prior_a
    gamma = np.full(n_pairs, min(0.5, 2 * mean_ctr + 1e-3))
    gamma = _attractiveness(
        n,
        c,
        examination[pos_idx],
        pair_idx,
        pair_n,
        gamma,
        (prior_a, prior_b),
        max_iterations,
        tolerance,
    )
    pair_c = np.bincount(pair_idx, weights=c, minlength=n_pairs)
    judgments = []
    for (query, product_id), pair in pair_of.items():
        clicks = int(pair_c[pair])
        conv = conversions.get(pair, 0)
        boost = 1.0 + (conv / clicks / 2.0 if clicks else 0.0)
        attractiveness = float(gamma[pair])
        judgments.append(
            Judgment(
                query=query,
                product_id=product_id,
                impressions=int(pair_n[pair]),
                clicks=clicks,
                conversions=conv,
                attractiveness=attractiveness,
                gain=min(1.0, attractiveness * boost),
            )
        )
    fit.judgments = judgments
    fit.impressions = int(n.sum())
    fit.clicks = int(c.sum())
    return fit


def _attractiveness(
    n: np.ndarray,
    c: np.ndarray,
    seen: np.ndarray,
    pair_idx: np.ndarray,
    pair_n: np.ndarray,
    gamma: np.ndarray,
    prior: tuple[float, float],
    max_iterations: int,
    tolerance: float,
) -> np.ndarray:
    """EM for attractiveness with examination ``seen`` (per cell) fixed: a skip counts as
    "attractive but not looked at" with probability (1 - e) g / (1 - e g)."""
    prior_a, prior_b = prior
    for _ in range(max_iterations):
        g = gamma[pair_idx]
        liked = c + (n - c) * (1.0 - seen) * g / np.maximum(1.0 - seen * g, 1e-12)
        new = (np.bincount(pair_idx, weights=liked, minlength=len(gamma)) + prior_a) / (
            pair_n + prior_a + prior_b
        )
        change = float(np.abs(new - gamma).max())
        gamma = new
        if change < tolerance:
            break
    return gamma


def query_id(query: str) -> str:
    """The training folder's id of a feedback query (stable across runs)."""
    return "fb-" + hashlib.sha256(query.encode("utf-8")).hexdigest()[:16]


def trainable(fit: ClickModelFit, min_impressions: int = 10) -> dict[str, list[Judgment]]:
    """Judgments by query, for queries shown at least ``min_impressions`` times in all whose
    products got at least one click (a query nobody clicked teaches nothing to rank)."""
    by_query: dict[str, list[Judgment]] = defaultdict(list)
    for judgment in fit.judgments:
        by_query[judgment.query].append(judgment)
    return {
        q: js
        for q, js in by_query.items()
        if sum(j.impressions for j in js) >= min_impressions and any(j.clicks for j in js)
    }


def write_click_dataset(
    fit: ClickModelFit, catalog_dir: Path, out_dir: Path, min_impressions: int = 10
) -> tuple[int, int]:
    """Write the fit's judgments as a WANDS-format folder: the catalog's ``product.csv``,
    the feedback queries and a ``label.csv`` with ``gain``; returns (queries, judgments).

    Products no longer in the catalog are left out."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(Path(catalog_dir) / "product.csv", out_dir / "product.csv")
    with (out_dir / "product.csv").open(encoding="utf-8") as f:
        catalog = {row["product_id"].strip() for row in csv.DictReader(f, delimiter="\t")}
    groups = trainable(fit, min_impressions)
    n_queries = n_judgments = 0
    with (
        (out_dir / "query.csv").open("w", encoding="utf-8", newline="") as qf,
        (out_dir / "label.csv").open("w", encoding="utf-8", newline="") as lf,
    ):
        queries = csv.writer(qf, delimiter="\t", lineterminator="\n")
        labels = csv.writer(lf, delimiter="\t", lineterminator="\n")
        queries.writerow(["query_id", "query"])
        labels.writerow(["id", "query_id", "product_id", "label", "gain"])
        for query in sorted(groups):
            rows = [j for j in groups[query] if j.product_id in catalog]
            if not rows:
                continue
            qid = query_id(query)
            queries.writerow([qid, query])
            n_queries += 1
            for j in sorted(rows, key=lambda j: (-j.gain, j.product_id)):
                labels.writerow([n_judgments, qid, j.product_id, j.label, f"{j.gain:.6f}"])
                n_judgments += 1
    shown = ", ".join(f"{x:.3f}" for x in fit.examination[:10])
    (out_dir / "README.txt").write_text(
        "Training judgments derived from shoppers' feedback (shared.training.clicks):\n"
        f"{fit.pages} pages, {fit.impressions} impressions, {fit.clicks} clicks; "
        f"{n_queries} queries, {n_judgments} judgments.\n"
        f"Examination by position (fitted): {shown}\n"
        "label.csv: gain = attractiveness (position bias removed), raised by conversions;\n"
        f"label = Exact (gain >= {EXACT_GAIN}), Partial (>= {PARTIAL_GAIN}), else Irrelevant.\n",
        encoding="utf-8",
    )
    return n_queries, n_judgments


def query_shoppers(
    engine: sqlalchemy.Engine, since: datetime | None = None, until: datetime | None = None
) -> dict[str, set[str]]:
    """For each feedback query (by :func:`query_id`), the erasure keys of the shoppers whose
    searches showed it, in the window: whose erasure takes the query out of a folder."""
    table = FeedbackEvent.__table__
    query = (
        select(table.c.query, table.c.user_id, table.c.session_id)
        .where(table.c.type == "impression", table.c.query.is_not(None))
        .distinct()
    )
    if since is not None:
        query = query.where(table.c.occurred_at >= since)
    if until is not None:
        query = query.where(table.c.occurred_at < until)
    shoppers: dict[str, set[str]] = defaultdict(set)
    with engine.connect() as conn:
        for text, user_id, session_id in conn.execute(query):
            keys = erasure_keys(user_id or "", session_id or "")
            shoppers[query_id(normalise_query(text))].update(keys)
    return dict(shoppers)
