"""Engine rows to answers: each task's output by model kind (dense, sparse, token vectors, multi-vector),
Matryoshka and normalization, encodings, scores, and the request's result."""
