"""Federated descriptive statistics: the query, the released vector's layout, and estimates from it.

``query`` (the typed query and its public hash), ``layout`` (which numbers a
hospital releases for a query, and each one's sensitivity), ``estimate``
(Table 1 figures and their noise intervals from a pooled noisy vector),
``km`` (Kaplan-Meier from pooled noisy events and exits). See docs/STATS.md.
"""
