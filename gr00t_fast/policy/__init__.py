"""The policy layer: data configs, checkpoint metadata, the prompt tokenizer, the processor and `Gr00tPolicy`."""
