"""The learned codec: ``Codec`` compresses PIL images into verified ``.aic`` bytes."""

from aic_worker.codec.codec import Codec
from aic_worker.codec.errors import AicFormatError

__all__ = ["AicFormatError", "Codec"]
