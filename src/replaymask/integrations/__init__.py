"""Adapters that put GMS into the frameworks researchers already use: Avalanche and
Mammoth. Each module needs its framework installed; none is imported by the rest of
replaymask."""
