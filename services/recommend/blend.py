"""The learned blend in the service (``SHOPSENSE_RECOMMEND_BLEND_LEARNING=on``): served
pages are logged, and every ``SHOPSENSE_RECOMMEND_BLEND_INTERVAL_S`` each placement's
weights are fitted on the logged pages' impressions and clicks
(``shared.recommendation.blend``) and used once a placement has enough clicks.

Logging never slows an answer: ``record`` queues the page, the learner's thread writes
queued pages in one transaction a second. Position bias comes from the click model the
trainer fits for search (``shared.training.clicks.fit_examination``, on the pages the
gateway shuffles); with too few explored clicks it is the model's assumption, 1/k.
Pages older than the attribution window are pruned as the learner runs.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from datetime import UTC, datetime, timedelta

import sqlalchemy
import structlog
from shopsense.recommend.v1 import recommend_service_pb2 as pb

from shared.recommendation.blend import BlendFit, ShownItem, fit_blend
from shared.recommendation.recommender import Recommender
from shared.storage.served import ServedLog
from shared.training.clicks import (
    DEFAULT_ETA,
    MAX_POSITION,
    MIN_EXPLORED_CLICKS,
    fit_examination,
    read_impressions,
)

# The attribution window's default: feedback cannot credit an older page.
WINDOW = timedelta(days=7)
FLUSH_S = 1.0
_log = structlog.get_logger("shopsense.recommend")


class BlendLearner:
    """Logs served pages; fits and applies each placement's weights on a schedule."""

    def __init__(
        self,
        recommender: Recommender,
        engine: sqlalchemy.Engine,
        interval_s: float,
        min_clicks: int,
        window: timedelta = WINDOW,
    ) -> None:
        self._recommender = recommender
        self._engine = engine
        self._log = ServedLog(engine)
        self._interval_s = interval_s
        self._min_clicks = min_clicks
        self._window = window
        self._queue: deque[tuple] = deque()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.fits: dict[str, BlendFit] = {}

    def record(self, request_id: str, placement: str, response: pb.RecommendResponse) -> None:
        """Queue a served page (its items' source values in shown order)."""
        if not request_id or not response.items:
            return
        items = [
            (item.product_id, {part.source: part.value for part in item.score_parts})
            for item in response.items
        ]
        self._queue.append((request_id, placement, datetime.now(UTC), items))

    def flush(self) -> int:
        """Write the queued pages; the rows written."""
        pages = []
        while self._queue:
            pages.append(self._queue.popleft())
        try:
            return self._log.add(pages)
        except Exception:
            self._queue.extendleft(reversed(pages))  # kept for the next try
            raise

    def examination(self) -> tuple[list[float], float, bool]:
        """Examination by position from the search pages' exploration, its eta, and
        whether it was measured (else assumed, 1/k)."""
        impressions, _ = read_impressions(self._engine)
        eta, clicks = fit_examination(impressions)
        measured = clicks >= MIN_EXPLORED_CLICKS
        if not measured:
            eta = DEFAULT_ETA
        return [k**-eta for k in range(1, MAX_POSITION + 1)], eta, measured

    def learn(self) -> dict[str, BlendFit]:
        """Fit every placement on the window's logged pages and use the fits with enough
        clicks; the fits (also kept for GetRecommenderStats)."""
        self.flush()
        since = datetime.now(UTC) - self._window
        self._log.prune(since)
        shown = [
            ShownItem(s.placement, s.position, s.values, s.clicked) for s in self._log.shown(since)
        ]
        examination, eta, measured = self.examination()
        options = self._recommender.options.weights
        current = {placement: dict(weights) for placement, weights in options.items()}
        fits = fit_blend(shown, current, examination, self._min_clicks)
        self._recommender.set_learned_weights(
            {name: fit.weights for name, fit in fits.items() if fit.used}
        )
        self.fits = fits
        for fit in fits.values():
            if fit.impressions:
                _log.info(
                    "blend_learned",
                    placement=fit.placement,
                    used=fit.used,
                    weights={k: round(v, 3) for k, v in fit.weights.items()},
                    impressions=fit.impressions,
                    clicks=fit.clicks,
                    gain=round(fit.gain, 5),
                    reason=fit.reason,
                    eta=round(eta, 3),
                    eta_measured=measured,
                )
        return fits

    def messages(self) -> list[pb.LearnedBlend]:
        return [
            pb.LearnedBlend(
                placement=fit.placement,
                weights=fit.weights,
                impressions=fit.impressions,
                clicks=fit.clicks,
                used=fit.used,
                reason=fit.reason,
                gain=fit.gain,
            )
            for fit in self.fits.values()
        ]

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="recommend-blend", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        next_fit = time.monotonic()
        while True:
            try:
                self.flush()
                if time.monotonic() >= next_fit:
                    self.learn()
                    next_fit = time.monotonic() + self._interval_s
            except Exception as exc:  # the database away: keep what is queued, retry
                _log.warning("blend_failed", error=str(exc))
            if self._stop.wait(min(FLUSH_S, self._interval_s)):
                return

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        try:
            self.flush()
        except Exception as exc:  # the database away at shutdown: those pages are lost
            _log.warning("blend_flush_failed", error=str(exc), pages=len(self._queue))
