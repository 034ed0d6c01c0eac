"""Animal detectors: the Detector protocol, imported detections, and crops (no Django)."""
