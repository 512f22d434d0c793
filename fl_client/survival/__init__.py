"""Survival analysis that keeps the DP guarantee: a discrete-time hazard model on a
fixed time grid (one loss term per patient), its metrics, and a Cox loss that is
refused under DP. See docs/TASKS.md (survival)."""
