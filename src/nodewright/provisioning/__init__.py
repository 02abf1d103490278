"""Provisioning over SSH: the pinned SSH client, ansible-runner, profiles and readiness checks.

Only this package imports ``ansible_runner``. Everything here is provider-agnostic: it starts from an
:class:`~nodewright.provisioning.target.SshTarget` and never learns which cloud the host came from.
"""
