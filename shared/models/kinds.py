"""The model kinds the suite trains and serves, as plain names: importing them costs
nothing (no torch), so the services and the trainer's RPC process can name a kind without
loading the training stack."""

from __future__ import annotations

INTENT_CLASSIFIER = "intent_classifier"
TEXT_ENCODER = "text_encoder"
CROSS_ENCODER = "cross_encoder"
SEQUENCE_RECOMMENDER = "sequence_recommender"
# Every kind, in the order reports list them.
MODEL_KINDS = (INTENT_CLASSIFIER, TEXT_ENCODER, CROSS_ENCODER, SEQUENCE_RECOMMENDER)
# The kinds that are a fine-tuned BERT over token ids (the sequence recommender reads
# text vectors instead).
TEXT_MODEL_KINDS = (INTENT_CLASSIFIER, TEXT_ENCODER, CROSS_ENCODER)
