"""Running face models: decode, detect, align, embed, on onnxruntime's provider chain."""
