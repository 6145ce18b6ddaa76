"""Config kwargs of the architectures in the paper's HH experiments, for random-weight models
of the real sizes in the GPU benchmarks (no Hub download)."""

GPT2 = dict(n_layer=12, n_embd=768, n_head=12, n_positions=1024, vocab_size=50_257)
GPT2_LARGE = dict(n_layer=36, n_embd=1280, n_head=20, n_positions=1024, vocab_size=50_257)
GEMMA_2B = dict(
    vocab_size=256_000,
    hidden_size=2048,
    intermediate_size=16_384,
    num_hidden_layers=18,
    num_attention_heads=8,
    num_key_value_heads=1,
    head_dim=256,
    max_position_embeddings=8192,
)
GEMMA_7B = dict(
    vocab_size=256_000,
    hidden_size=3072,
    intermediate_size=24_576,
    num_hidden_layers=28,
    num_attention_heads=16,
    num_key_value_heads=16,
    head_dim=256,
    max_position_embeddings=8192,
)
