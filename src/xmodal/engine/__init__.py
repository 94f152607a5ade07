"""What users do with an encoder: zero-shot classification (search, moderation and RAG follow)."""
