"""Sentence embeddings offline: `loader.py` (one loader for every model, the content-hash cache) and the
backends it knows (`e5.py`: multilingual-e5-small rebuilt in torch; USE v3 ONNX lives in loader.py).
"""
