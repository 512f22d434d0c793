"""The hospital's side of a descriptive-statistics query (docs/STATS.md).

``local`` (exact sufficient statistics of its own rows), ``suppress``
(small cells set to 0 before noise), ``noise`` (Laplace or Gaussian noise
calibrated to the declared ranges), ``site`` (one answer: compute, suppress,
charge the privacy account, add noise, encrypt, sign the charge), ``data``
(the raw, unstandardised rows a hospital describes).
"""
