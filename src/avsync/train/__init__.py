"""Training of the neural sync methods: tasks (sampling, losses), the loop, checkpoints."""

from avsync.train.checkpoint import build_model, load_checkpoint, save_checkpoint
from avsync.train.loop import TrainConfig, TrainResult, seed_everything, train
from avsync.train.tasks import AugmentConfig, SyncDataset, TaskConfig

__all__ = ["AugmentConfig", "SyncDataset", "TaskConfig", "TrainConfig", "TrainResult", "build_model",
           "load_checkpoint", "save_checkpoint", "seed_everything", "train"]
