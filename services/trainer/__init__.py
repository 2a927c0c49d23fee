"""The trainer service: fine-tunes, registers and publishes model versions."""
