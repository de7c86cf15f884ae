"""Fine-tuning inside the product: recorded runs → samples → packed rows → SFT / LoRA / DPO.

Sits between `app` (entry points) and `agent` + `vlm` (data, dialects, the model) in the
import order: it never imports Qt, and neither `agent` nor `vlm` imports it.
"""
