"""`lp_ft`: LP-FT (Kumar et al. 2022). A linear probe first fits the head on the frozen model's cached
head inputs (feature extraction's SGD settings: 40 epochs at 3e-3, at least 5,000 steps), then everything
is fine-tuned from that head at the fine-tuning defaults, so a random head does not distort the
pretrained features."""
from .base import Method
from .feature_extraction import FEATURE_EXTRACTION

LP_FT = Method(
    name="lp_ft", summary="a linear probe on frozen features first, then full fine-tuning from that head",
    epochs=5, lr=1e-4, min_steps=250, fit="probe_then_fine_tune",
    card="LP-FT: a linear probe on frozen features first, then full fine-tuning from that head")

# The probe fits the head as feature extraction's SGD head solver would.
PROBE = {key: getattr(FEATURE_EXTRACTION, key) for key in ("epochs", "lr", "min_steps")}
