"""A lean render worker: automatic1111's txt2img API on diffusers (see ``worker/README.md``)."""
