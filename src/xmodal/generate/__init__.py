"""Images generated from text by the shared space: an image is optimised until the encoder finds
it close to the prompt (optimise.py), drawn as Fourier-parametrised pixels or soft strokes.

    from xmodal.generate import GenerateOptions, generate
    result = generate("a lighthouse at night", "lite", GenerateOptions(steps=200))
    result.image.save("lighthouse.png")
"""

from xmodal.generate.optimise import Generated, GenerateOptions, generate

__all__ = ["GenerateOptions", "Generated", "generate"]
