"""CLIP models: catalogue and files (``files``), ONNX sessions (``sessions``), the tokenizer
(``tokenizer``) and image preprocessing (``preprocess``), the encoder (``encoder``), int8 quantisation
(``quantize``) and the bundled tiny test model (``tiny/``).

Import the submodules directly; this package imports nothing so that onnxruntime loads only when used.
"""
