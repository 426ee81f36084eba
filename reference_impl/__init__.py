"""The ckptspec reference trainer: FSDP2 + torch.distributed.checkpoint, conformant to spec v1."""
