"""What one camera does with its frames, in order: capture and decode, tracking,
line and zone counting, drawing. Detections come from ``camcount.detectors``.
"""
