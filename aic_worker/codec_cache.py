"""One loaded codec per model per worker process, loaded on first use after the fork.

Loading lazily in the process that runs jobs is what keeps CUDA out of the parent of a
prefork pool (CUDA can't be used in a child forked after it was initialised).
"""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from aic_worker.codec import Codec
from aic_worker.jobs.errors import PermanentJobError
from aic_worker.model_choice import find_weights
from aic_worker.observe import metrics


class CodecCache:
    def __init__(self, device: str) -> None:
        self.device = device
        self._codecs: dict[str, Codec] = {}

    def get(self, sessions: sessionmaker[Session], model_id: str) -> Codec:
        """The codec for `model_id`, whose weights file must hash to that id."""
        if model_id not in self._codecs:
            with sessions() as session:
                path, looked = find_weights(session, model_id)
            if path is None:
                raise PermanentJobError(
                    f"weights of model {model_id} not found (looked at {', '.join(map(str, looked))})"
                )
            codec = self._codecs[model_id] = Codec.load(path, self.device)
            metrics.MODEL_LOADED.labels(model_id, str(codec.device)).set(1)
        return self._codecs[model_id]
