"""Models: specs (`model=`), tokenizers, loading options (dtype, LoRA), batching, scoring and
the generation engines behind one Generator protocol (`sampling=`)."""
