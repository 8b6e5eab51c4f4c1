"""What the worker tells SREs about itself: sampled gauges (lag, tables), structured and redacted logs."""
