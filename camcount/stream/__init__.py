"""What happens to a camera's events after it: ordered channels, event-time
windows and aggregation, the live feed, spills. The events themselves are
``camcount.events``, shared with the cameras.
"""
