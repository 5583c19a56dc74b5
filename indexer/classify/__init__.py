"""Zero-shot classification against stored reference vectors.

Pure parts (no I/O, unit-tested): `prompts` (templates and ensembles), `scoring` (cosine, softmax,
margin, `other`), `boxes` (region validation and crops), `calibration` (precision/recall/F1 sweeps).
Store and service parts: `store` (class sets and classifiers in Weaviate), `references` (building
reference vectors from prompts, images and raw embeddings), `service` (classify, calibrate, re-encode),
`labelling` (bulk-label jobs).
"""
