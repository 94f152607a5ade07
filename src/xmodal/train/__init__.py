"""Contrastive fine-tuning of lite, OpenCLIP and Hugging Face models on image-caption pairs.

from xmodal.train import TrainConfig, TrainMode, train
result = train("pairs.csv", "lite-en", "runs/emoji", TrainConfig(epochs=5))
load_model("runs/emoji")  # the trained model, by its folder
"""

from xmodal.train.config import TrainConfig, TrainMode
from xmodal.train.trainer import EpochReport, TrainResult, train

__all__ = ["EpochReport", "TrainConfig", "TrainMode", "TrainResult", "train"]
