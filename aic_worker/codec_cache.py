"""One loaded codec per model per worker process, loaded on first use after the fork.

Loading lazily in the process that runs jobs is what keeps CUDA out of the parent of a
prefork pool (CUDA can't be used in a child forked after it was initialised).
"""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from aic_worker.codec import Codec
from aic_worker.jobs.errors import PermanentJobError
from aic_worker.model_choice import weights_candidates
from aic_worker.observe import metrics
from aic_worker.store.archive import file_sha256


class CodecCache:
    def __init__(self, device: str) -> None:
        self.device = device
        self._codecs: dict[str, Codec] = {}

    def get(self, sessions: sessionmaker[Session], model_id: str) -> Codec:
        """The codec for `model_id`, whose weights file must hash to that id."""
        if model_id not in self._codecs:
            with sessions() as session:
                paths = list(dict.fromkeys(weights_candidates(session, model_id)))
            for path in paths:
                if path.is_file() and file_sha256(path) == model_id:
                    codec = self._codecs[model_id] = Codec.load(path, self.device)
                    metrics.MODEL_LOADED.labels(model_id, str(codec.device)).set(1)
                    break
            else:
                looked = ", ".join(map(str, paths))
                raise PermanentJobError(f"weights of model {model_id} not found (looked at {looked})")
        return self._codecs[model_id]
