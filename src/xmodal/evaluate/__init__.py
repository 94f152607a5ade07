"""Evaluation of an encoder on an image-caption pair set: retrieval, zero-shot, embedding
quality, and a report with plots. Heavy libraries (scikit-learn, matplotlib) load when used."""

from xmodal.evaluate.embed import EmbeddedPairs, embed_pairs
from xmodal.evaluate.pipeline import dataset_summary, evaluate, evaluate_embedded
from xmodal.evaluate.report import write_report
from xmodal.evaluate.retrieval import retrieval_metrics

__all__ = [
    "EmbeddedPairs",
    "dataset_summary",
    "embed_pairs",
    "evaluate",
    "evaluate_embedded",
    "retrieval_metrics",
    "write_report",
]
