"""Applications built on a collection, an encoder and a language model: ask (answers from a
collection, with sources), describe (a sentence about an image)."""
