"""Typed errors. Library code raises these; only the CLI and the server turn them into messages."""

from __future__ import annotations


class XmodalError(Exception):
    """Base class for every error xmodal raises on purpose."""


class ImageLoadError(XmodalError):
    """An input could not be read as an image."""

    def __init__(self, source: str, reason: str):
        self.source = source
        self.reason = reason
        super().__init__(f"{source}: {reason}")


class ImageTooLargeError(ImageLoadError):
    """An image over the pixel limit (a likely decompression bomb), refused before decoding."""


class AudioLoadError(XmodalError):
    """An input could not be read as audio (or a video's frames or sound)."""

    def __init__(self, source: str, reason: str):
        self.source = source
        self.reason = reason
        super().__init__(f"{source}: {reason}")


class VideoLoadError(AudioLoadError):
    """A file could not be read as a video: not one, damaged, or over a limit. An
    AudioLoadError too: whoever reads sound and video files (indexing, queries) catches both."""


class InvalidInputError(XmodalError, ValueError):
    """Arguments that can never work: empty label lists, empty queries, bad names."""


class ModelNotFoundError(XmodalError):
    """A model name that no backend knows, or a checkpoint that is not where it was said to be."""


class ModelLoadError(XmodalError):
    """A known model that cannot be loaded here and now (offline, corrupt checkpoint...)."""


class MissingExtraError(ModelLoadError):
    """A backend whose optional dependency is not installed."""

    def __init__(self, what: str, extra: str | None, module: str, package: str | None = None):
        # extra=None: a core dependency that is missing from a broken install.
        self.extra = extra
        hint = f"'xmodal[{extra}]'" if extra else (package or module)
        super().__init__(f"{what} needs the '{module}' package: pip install {hint}")


class MissingDataError(XmodalError, FileNotFoundError):
    """Data a command needs is not there: a pairs file or folder, or a sample set (a Debian
    package) that is not installed."""


class UnsupportedModalityError(XmodalError):
    """Asked a model for a modality it does not embed."""


class CatalogError(XmodalError):
    """A collection database that cannot be opened or used: corrupt, locked, or too new."""


class CollectionNotFoundError(CatalogError, FileNotFoundError):
    """Asked to open a collection that does not exist, without permission to create it."""


class ModelMismatchError(XmodalError):
    """A collection opened with a different model than the one its vectors came from."""


class CollectionBusyError(CatalogError):
    """Another process is writing the collection (indexing it) and the caller chose not to wait."""


class RemoteIndexError(XmodalError):
    """A vector index on a server (Milvus) that cannot be reached, opened or written."""


class DeviceError(ModelLoadError):
    """A device (cuda, cuda:N, mps) that this machine or this install cannot use."""


class ClusterError(XmodalError):
    """A compute cluster (Ray) that cannot be started or reached, or a job on it that failed."""


class ExportError(XmodalError):
    """A model that cannot be exported, or whose export does not reproduce it closely enough
    (nothing is written then)."""


class LlmError(XmodalError):
    """A language model that cannot be reached, loaded or understood (bad reply, HTTP error)."""
