"""Training frameworks: PyTorch Lightning (:mod:`.lightning`, extra ``[lightning]``) and the
Hugging Face ``Trainer`` (:mod:`.transformers`, extra ``[transformers]``). Both profile the
loop they run through :class:`~mtldiag.integrations.recorder.LoopProfiler`."""
