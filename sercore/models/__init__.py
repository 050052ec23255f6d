"""The models of the five studies, built by name.

    build_model(study, **options) -> nn.Module      study in STUDIES

Every model: forward(batch) -> dict (`logits` [B, C], `gender_logits` [B, 2], `avd` [B, 3] as it applies),
loss(batch, outputs, class_weights=None) -> scalar, and `inputs` = {"speech": "logmel" | "ssl" |
"logmel128-segments", "text": bool} telling the data pipeline what to feed; model_inputs(study, **options)
says what `inputs` will be without building the model (each class's inputs_of, which its __init__ uses).
Option defaults are the published settings; the profiles (sercore/profiles/*.yaml, section `model`) give smaller ones. Feature sizes
(speech_dim, text_dim, ssl_layers) must match the features the model is fed; the models check them.
"""

from __future__ import annotations

import inspect

from torch import nn

from sercore.studies import STUDIES as STUDY_NAMES

from sercore.models.area_cnn import AreaCNN, utterance_scores
from sercore.models.dimensional import DimensionalModel
from sercore.models.fusion import FusionModel
from sercore.models.ks_transformer import KSTransformer
from sercore.models.multitask import MultitaskModel

_MODELS = {"fusion": FusionModel, "ks-transformer": KSTransformer, "area-cnn": AreaCNN,
           "multitask": MultitaskModel, "dimensional": DimensionalModel}
# study -> model class, in sercore.studies.STUDIES' order; a study without a model fails here, at import
STUDIES = {study: _MODELS[study] for study in STUDY_NAMES}


def model_options(study: str) -> dict:
    """The options of `study` and their defaults."""
    if study not in STUDIES:
        raise ValueError(f"unknown study {study!r}; valid studies: {', '.join(STUDIES)}")
    params = inspect.signature(STUDIES[study].__init__).parameters
    return {name: p.default for name, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}


def model_inputs(study: str, **options) -> dict:
    """What build_model(study, **options).inputs will be, without building the model."""
    return STUDIES[study].inputs_of({**model_options(study), **options})


def build_model(study: str, **options) -> nn.Module:
    """Build the model of `study`; an unknown study or option fails listing the valid ones."""
    valid = model_options(study)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise TypeError(f"{study}: unknown option(s) {', '.join(unknown)}; valid options: {', '.join(valid)}")
    return STUDIES[study](**options)


__all__ = ["STUDIES", "build_model", "model_inputs", "model_options", "utterance_scores", "AreaCNN", "DimensionalModel",
           "FusionModel", "KSTransformer", "MultitaskModel"]
