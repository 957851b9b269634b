"""BT.601 luma weights, shared by the quality measures and RDOQ's colour prices.

A module of its own and free of torch: the admin CLI's parser imports rdoq (through
rate_control) and must start without torch, so rdoq cannot take them from ``quality``.
"""

LUMA = (0.299, 0.587, 0.114)  # weights of R, G, B
