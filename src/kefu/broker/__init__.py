"""Cross-node delivery behind one `Broker` protocol; see `base.py`."""
