"""Differential-privacy accounting: the public function from a registered protocol and sample counts to epsilon.

A hospital's accountant and the auditor call the same code, so the epsilon a
hospital commits can be recomputed by anyone who holds the protocol:
``plan`` (a hospital's DP-SGD figures from the protocol and its record count,
delta's range, the epsilon its commitments must report), ``epsilon`` (epsilon
of a step history, the noise for a target epsilon, their memo), ``prv_plan``
(PRV accounting discretised once for the planned steps). See docs/PRIVACY.md.
"""
