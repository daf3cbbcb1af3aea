"""The trained methods, wrapped for the registry: weights shipped in ``avsync/weights/``.

Each method NAME loads ``avsync/weights/NAME.safetensors`` (trained by ``benchmarks/train.py``,
model card ``avsync/weights/NAME.md``). A method whose weights are not shipped is still listed
(``avsync models`` says so) but cannot be created; any checkpoint can be used directly with
``create_model("path/to/model.safetensors")`` or ``avsync detect --method path.safetensors``.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from avsync.errors import AvsyncError
from avsync.models.registry import register_model

TRAINED_METHODS: dict[str, str] = {
    "syncnet": "SyncNet embeddings of mouth crops, Perfect-Match training (Chung & Zisserman)",
    "landmark": "lip landmark + blendshape sequence embeddings (this project's)",
    "c3": "C3 pair classifier of lip flow and MFCC, sliding window (Kikuchi & Ozasa)",
    "wlos": "WLOS: lip flow + MFCC -> offset by regression, -9..9 frames (Kikuchi & Ozasa)",
    "simmatrix": "similarity-matrix offset classifier, end to end (Kim et al. 2021)",
    "vocalist": "VocaLiST-style cross-modal transformer pair classifier",
}
"""Registry name -> description. The checkpoint's ``method`` names the model family."""


def weights_path(name: str) -> Path:
    """Where the shipped weights of ``name`` live (the file may be missing)."""
    return Path(str(resources.files("avsync") / "weights" / f"{name}.safetensors"))


def has_weights(name: str) -> bool:
    return weights_path(name).is_file()


def _factory(name: str):
    def make():
        from avsync.models.scoring import NeuralSyncMethod

        path = weights_path(name)
        if not path.is_file():
            raise AvsyncError(f"no trained weights are shipped for {name!r}; train them with "
                              f"`python benchmarks/train.py --method {name} ...` and pass the "
                              "checkpoint as --method PATH.safetensors")
        return NeuralSyncMethod.from_checkpoint(path, name=name)

    return make


for _name, _text in TRAINED_METHODS.items():
    register_model(_name, "trained", _text)(_factory(_name))
