"""Adapters that drive third-party trainers, each with its framework's own checkpointing.

Each module imports its framework (an optional extra of ckptspec: ``pip install
'ckptspec[accelerate]'``, ``[lightning]``, ``[torchtitan]`` or ``[frameworks]``); nothing else in
ckptspec imports a framework.
"""
