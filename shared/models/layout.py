"""The files of an exported version folder, as export writes them and Triton's adapter,
the engines and publishing read them (no import of any engine here)."""

from __future__ import annotations

# The fp32 and int8 graphs, and the one the version serves (a copy of one of them).
FP32_FILE, INT8_FILE, SERVED_FILE = "model.fp32.onnx", "model.int8.onnx", "model.onnx"
# What the version is (kind, labels, token limits), and how it was checked and chosen.
SPEC_FILE, REPORT_FILE = "shopsense_model.json", "export_report.json"
# sequence_recommender only: the item tower's graph (model.onnx is the shopper tower) and
# the product ids the model has learned residuals for, in row order.
ITEM_TOWER_FILE, ITEMS_FILE = "item_tower.onnx", "items.json"
