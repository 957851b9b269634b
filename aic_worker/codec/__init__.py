"""The learned codec: ``Codec`` compresses PIL images into verified ``.aic`` bytes.

``Codec`` (and with it torch) loads on first use, so the container and the entropy coder
(``bitstream``, ``entropy``) import without torch: the catalog, the CLI's listing commands
and the test that no float model reaches a probability rely on that.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aic_worker.codec.errors import AicFormatError

if TYPE_CHECKING:
    from aic_worker.codec.codec import Codec

__all__ = ["AicFormatError", "Codec"]


def __getattr__(name: str) -> Any:
    if name == "Codec":
        from aic_worker.codec.codec import Codec

        return Codec
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
